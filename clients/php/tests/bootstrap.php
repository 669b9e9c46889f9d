<?php

declare(strict_types=1);

// Composer's autoloader when `composer install` ran; else the PSR-4 map of
// composer.json by hand, so the suite runs with Debian's phpunit alone.
$vendor = __DIR__ . '/../vendor/autoload.php';
if (is_file($vendor)) {
    require $vendor;
} else {
    spl_autoload_register(static function (string $class): void {
        foreach (['Stockd\\Tests\\' => __DIR__ . '/', 'Stockd\\' => __DIR__ . '/../src/'] as $prefix => $dir) {
            if (str_starts_with($class, $prefix)) {
                $f = $dir . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
                if (is_file($f)) {
                    require $f;
                }
                return;
            }
        }
    });
}
if (!extension_loaded('msgpack')) {
    fwrite(STDERR, "the msgpack extension is not loaded: apt-get install php-msgpack\n");
    exit(1);
}
