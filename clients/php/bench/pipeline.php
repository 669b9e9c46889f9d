<?php

// Pipelined reserves/s of the PHP client: batches of BATCH reserves
// (pipeline()->execute()) on one connection for SECONDS, over SKUS SKUs.
// Prints one JSON line. Usage: php pipeline.php HOST:PORT [SECONDS] [SKUS] [BATCH] [TOKEN]

declare(strict_types=1);

require __DIR__ . '/../tests/bootstrap.php';

[$addr, $seconds, $skus, $batch, $token] = [$argv[1] ?? '127.0.0.1:7400', (float)($argv[2] ?? 5),
    (int)($argv[3] ?? 100), (int)($argv[4] ?? 1000), $argv[5] ?? null];
$c = new Stockd\Client($addr, token: $token);
$run = 'bphp' . bin2hex(random_bytes(3));
$p = $c->pipeline();
for ($i = 0; $i < $skus; $i++) {
    $p->skuPut("$run-$i", 1000000000);
}
foreach ($p->execute() as $r) {
    if ($r instanceof Throwable) {
        throw $r;
    }
}
$n = 0;
$errors = 0;
$t0 = microtime(true);
while (microtime(true) - $t0 < $seconds) {
    for ($i = 0; $i < $batch; $i++) {
        $p->reserve("$run-o" . ($n + $i), "$run-" . (($n + $i) % $skus), 1);
    }
    foreach ($p->execute() as $r) {
        $errors += $r instanceof Throwable ? 1 : 0;
    }
    $n += $batch;
}
$dt = microtime(true) - $t0;
echo json_encode(['client' => 'php', 'reserves' => $n, 'errors' => $errors, 'seconds' => round($dt, 3),
    'per_s' => (int)round($n / $dt)]), "\n";
