<?php

// No strict_types here, on purpose: a gateway's code often has none, and
// then PHP would coerce a scalar given for a `bool` parameter. WireTest
// calls through this class to show that $check is refused all the same.

namespace Stockd\Tests;

use Stockd\Client;

final class NonStrictCaller
{
    /** @return array<string, mixed> */
    public static function reserveParams(mixed $check): array
    {
        return Client::reserveParams('o', 'a', 1, null, null, $check);
    }
}
