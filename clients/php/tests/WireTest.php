<?php

declare(strict_types=1);

namespace Stockd\Tests;

use PHPUnit\Framework\TestCase;
use Stockd\CheckFailed;
use Stockd\Client;
use Stockd\ProtocolError;
use Stockd\Refused;
use Stockd\Retryable;
use Stockd\SetAside;
use Stockd\StockdException;
use Stockd\Unavailable;
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

    public function testCheckIsSentOnlyAsTrue(): void
    {
        self::assertTrue(Client::reserveParams('o', 'a', 1, null, null, true)['check']);
        self::assertTrue(Client::reserveParams('o', ['a' => 1, 'b' => 2], null, 60000, null, true)['check']);
        self::assertArrayNotHasKey('check', Client::reserveParams('o', 'a', 1, null, null, false));
        self::assertArrayNotHasKey('check', Client::reserveParams('o', 'a', 1, null, null));
    }

    public function testCheckMustBeABoolEvenForACallerWithoutStrictTypes(): void
    {
        self::assertTrue(NonStrictCaller::reserveParams(true)['check']);
        foreach ([null, 0, 1, 'true', 'no', [true], 1.0] as $bad) {
            try {
                NonStrictCaller::reserveParams($bad);
                self::fail('check ' . json_encode($bad) . ' was taken');
            } catch (\TypeError $e) {
                self::assertStringContainsString('must be a bool', $e->getMessage());
            }
        }
    }

    public function testCheckFailedIsARefusalOfItsOwn(): void
    {
        $e = StockdException::fromWire(['code' => 'check_failed', 'message' => 'check refused: x 500_004 y',
                                        'retryable' => false, 'order_id' => 'o-1']);
        self::assertSame(CheckFailed::class, get_class($e));
        self::assertInstanceOf(Refused::class, $e);
        self::assertSame(['check_failed', false, 'o-1'], [$e->errorCode, $e->retryable, $e->orderId()]);
        $u = StockdException::fromWire(['code' => 'unavailable', 'message' => 'm', 'retryable' => true,
                                        'reason' => 'check_unavailable']);
        self::assertSame(Unavailable::class, get_class($u));
        self::assertSame('check_unavailable', $u->reason());
    }

    public function testASetAsideUnavailableIsFinal(): void
    {
        $e = StockdException::fromWire(['code' => 'unavailable', 'message' => 'sku x set aside',
                                        'retryable' => false, 'set_aside' => true]);
        self::assertSame(SetAside::class, get_class($e));
        self::assertInstanceOf(Refused::class, $e);
        self::assertNotInstanceOf(Retryable::class, $e);
        self::assertSame('unavailable', $e->errorCode);
    }
}
