<?php

declare(strict_types=1);

namespace Stockd\Tests;

use PHPUnit\Framework\TestCase;
use Stockd\Client;
use Stockd\ProtocolError;
use Stockd\Wire;

/** Framing of untrusted replies, without a server: limits hold before decoding. */
final class WireTest extends TestCase
{
    public function testPingRequestIsTheProtocolVector(): void
    {
        // proto/PROTOCOL.md §2, vector `ping`.
        self::assertSame('940001a470696e679180', bin2hex(Wire::request(1, 'ping', [])));
    }

    public function testFrameEndFindsOneMessageAndWaitsForTheRest(): void
    {
        $m = msgpack_pack([1, 7, null, ['lines' => [['sku' => 'a', 'qty' => 1]], 'order_id' => 'o-1']]);
        self::assertSame(strlen($m), Wire::frameEnd($m . $m, 0, 1 << 20));
        self::assertSame(2 * strlen($m), Wire::frameEnd($m . $m, strlen($m), 1 << 20));
        for ($cut = 0; $cut < strlen($m); $cut++) {
            self::assertSame(-1, Wire::frameEnd(substr($m, 0, $cut), 0, 1 << 20), "cut at $cut");
        }
    }

    public function testAHeaderClaimingFourGigabytesIsRefusedAtOnce(): void
    {
        $this->expectException(ProtocolError::class);
        Wire::frameEnd("\x94\x01\x01\xc0\xdb\xff\xff\xff\xff", 0, 4 << 20);
    }

    public function testAnArrayCountBeyondTheLimitIsRefused(): void
    {
        $this->expectException(ProtocolError::class);
        Wire::frameEnd("\xdd\x7f\xff\xff\xff", 0, 1 << 20);
    }

    public function testNestingBeyondTheLimitIsRefused(): void
    {
        $this->expectException(ProtocolError::class);
        Wire::frameEnd(str_repeat("\x91", Wire::MAX_DEPTH + 1) . "\x00", 0, 1 << 20);
    }

    public function testMalformedByteIsRefused(): void
    {
        $this->expectException(ProtocolError::class);
        Wire::frameEnd("\x94\x01\xc1", 0, 1 << 20);
    }

    public function testLinesGivenAsAMapKeepNumericSkusAsStrings(): void
    {
        $p = Client::reserveParams('o1', ['123' => 1, 'cap' => 2], null, 60000, null);
        self::assertSame([['sku' => '123', 'qty' => 1], ['sku' => 'cap', 'qty' => 2]], $p['lines']);
        self::assertSame(60000, $p['hold_ms']);
    }
}
