<?php

declare(strict_types=1);

namespace Stockd\Tests;

use PHPUnit\Framework\TestCase;
use Stockd\CheckFailed;
use Stockd\Client;
use Stockd\ConnectionLost;
use Stockd\Insufficient;
use Stockd\NotFound;
use Stockd\Order;
use Stockd\OutcomeUnknown;
use Stockd\Refused;
use Stockd\Retryable;
use Stockd\StockdException;

/**
 * The shared scenarios of clients/scenarios.json against real servers
 * (started by tests/integration/clientenv.py, addresses in the environment).
 */
final class ScenariosTest extends TestCase
{
    private static ?array $file = null;
    private static ?string $prefix = null;
    /** @var array<string, StockdException>|null */
    private static ?array $stalled = null;
    private static ?StockdException $expired = null;
    private static ?CheckFailed $checkFailed = null;

    private static function file(): array
    {
        return self::$file ??= json_decode(
            (string)file_get_contents(__DIR__ . '/../../scenarios.json'), true, 64, JSON_THROW_ON_ERROR);
    }

    private static function scenario(string $id): array
    {
        foreach (self::file()['scenarios'] as $s) {
            if ($s['id'] === $id) {
                return $s;
            }
        }
        throw new \LogicException("no scenario $id in scenarios.json");
    }

    /** Scenario ids of scenarios.json and the test that plays each. */
    private const PLAYED = [
        'hoodie' => 'testHoodie',
        'cut_retry' => 'testCutRetry',
        'pipeline' => 'testPipeline',
        'subscribe' => 'testSubscribe',
        'check' => 'testCheck',
        'errors' => 'testErrorCase',
        'cluster' => 'testCluster',
    ];

    private static function env(string $k): string
    {
        $v = getenv($k);
        if ($v === false || $v === '') {
            self::fail("$k is not set: run the suite through tests/integration/clientenv.py "
                . '(tools/test does), which starts the servers');
        }
        return $v;
    }

    private static function p(): string
    {
        return self::$prefix ??= 'php-' . bin2hex(random_bytes(3)) . '-';
    }

    private function client(string $addrVar = 'STOCKD_ADDR', ?string $token = null): Client
    {
        return new Client(self::env($addrVar), connectTimeoutMs: 2000, timeoutMs: 15000,
            token: $token ?? (str_starts_with($addrVar, 'STOCKD_CLUSTER') ? null : self::env('STOCKD_ADMIN_TOKEN')));
    }

    /** Sends one request on each client before reading any reply. */
    private static function together(array $clients, array $requests): array
    {
        $ids = [];
        foreach ($clients as $i => $c) {
            $ids[$i] = $c->send(...$requests[$i]);
        }
        foreach ($clients as $c) {
            $c->flush();
        }
        $out = [];
        foreach ($clients as $i => $c) {
            [$err, $res] = $c->wait($ids[$i]);
            $out[$i] = $err !== null ? StockdException::fromWire($err) : Order::fromWire($res);
        }
        return $out;
    }

    private static function hoodieRound(Client $admin, array $buyers, string $sku, int $units, string $oidPrefix): void
    {
        $admin->skuPut($sku, $units);
        $reqs = [];
        foreach ($buyers as $b => $_) {
            $reqs[$b] = ['reserve', Client::reserveParams("$oidPrefix-b$b", $sku, 1, null, null)];
        }
        $yes = 0;
        $no = 0;
        foreach (self::together($buyers, $reqs) as $r) {
            if ($r instanceof Order) {
                self::assertSame('confirmed', $r->status);
                self::assertSame(1, $r->fromOwn);
                $yes++;
            } else {
                self::assertInstanceOf(Insufficient::class, $r, (string)$r);
                self::assertSame(0, $r->available());
                $no++;
            }
        }
        self::assertSame([$units, count($buyers) - $units], [$yes, $no], "round of $sku");
        $st = $admin->stockGet($sku);
        self::assertSame($units, $st->ownReserved);
        self::assertSame(0, $st->available);
    }

    // ---------------------------------------------------------------- the list

    public function testEveryScenarioIsPlayed(): void
    {
        foreach (self::file()['scenarios'] as $s) {
            self::assertArrayHasKey($s['id'], self::PLAYED, "scenario {$s['id']} is not played by the PHP suite");
            self::assertTrue(method_exists($this, self::PLAYED[$s['id']]));
        }
    }

    public function testHoodie(): void
    {
        $sc = self::scenario('hoodie');
        $admin = $this->client();
        $buyers = [];
        for ($b = 0; $b < $sc['buyers']; $b++) {
            $buyers[] = $this->client();
        }
        for ($r = 0; $r < $sc['rounds']; $r++) {
            self::hoodieRound($admin, $buyers, self::p() . "hoodie-$r", $sc['units'], self::p() . "h$r");
        }
    }

    public function testCutRetry(): void
    {
        $sc = self::scenario('cut_retry');
        $admin = $this->client();
        $sku = self::p() . 'cut';
        $admin->skuPut($sku, $sc['units']);
        $cut = $this->client('STOCKD_CUT_ADDR');
        $a = 'cut-' . self::p() . 'a';
        try {
            $cut->reserve($a, $sku, 2);
            self::fail('the relay did not cut the first reserve');
        } catch (ConnectionLost $e) {
            self::assertInstanceOf(OutcomeUnknown::class, $e);
            self::assertTrue($e->retryable);
        }
        $oa = $cut->reserve($a, $sku, 2);
        self::assertSame(['confirmed', 2], [$oa->status, $oa->qty]);

        $b = 'cut-' . self::p() . 'b';
        $ob = $cut->reserveWithRetry($b, $sku, 1, totalMs: 10000);
        self::assertSame(['confirmed', 1], [$ob->status, $ob->qty]);

        $st = $admin->stockGet($sku);
        self::assertSame([3, 2], [$st->ownReserved, $st->available], 'each order reserved once');
        self::assertSame($oa->createdAt, $admin->orderGet($a)->createdAt);
        self::assertSame(1, $admin->orderGet($b)->qty);
    }

    public function testPipeline(): void
    {
        $sc = self::scenario('pipeline');
        $c = $this->client();
        $sku = self::p() . 'pipe';
        $c->skuPut($sku, $sc['units']);
        $p = $c->pipeline();
        for ($i = 0; $i < $sc['reserves']; $i++) {
            $p->reserve(self::p() . "pipe-$i", $sku, 1);
        }
        self::assertCount($sc['reserves'], $p);
        $res = $p->execute();
        self::assertCount($sc['reserves'], $res);
        foreach ($res as $i => $r) {
            if ($i < $sc['units']) {
                self::assertInstanceOf(Order::class, $r, "reserve $i: " . ($r instanceof \Throwable ? $r->getMessage() : ''));
                self::assertSame(self::p() . "pipe-$i", $r->orderId);
            } else {
                self::assertInstanceOf(Insufficient::class, $r, "reserve $i");
            }
        }
        $st = $c->stockGet($sku);
        self::assertSame([$sc['units'], 0], [$st->ownReserved, $st->available]);
    }

    /** Plays the subscribe scenario once; returns the Expired of the late confirm. */
    private function playSubscribe(): StockdException
    {
        if (self::$expired !== null) {
            return self::$expired;
        }
        $sc = self::scenario('subscribe');
        $listener = $this->client();
        $updates = $listener->subscribe($sc['wait_ms']);
        $c = $this->client();
        $sku = self::p() . 'expiring';
        $oid = self::p() . 'expiring-1';
        $c->skuPut($sku, 1);
        self::assertSame('held', $c->reserve($oid, $sku, 1, holdMs: $sc['hold_ms'])->status);
        $t0 = microtime(true);
        $got = null;
        foreach ($updates as $o) {
            if ($o->orderId === $oid) {
                $got = $o;
                break;
            }
            if (microtime(true) - $t0 > $sc['wait_ms'] / 1000) {
                break;
            }
        }
        self::assertNotNull($got, "no order.update for $oid within {$sc['wait_ms']} ms");
        self::assertSame('expired', $got->status);
        try {
            $c->confirm($oid);
            self::fail('confirm after the hold lapsed succeeded');
        } catch (StockdException $e) {
            return self::$expired = $e;
        }
    }

    public function testSubscribe(): void
    {
        self::assertSame('expired', $this->playSubscribe()->errorCode);
    }

    /** Plays the check scenario once; returns the CheckFailed of case (c). */
    private function playCheck(): CheckFailed
    {
        if (self::$checkFailed !== null) {
            return self::$checkFailed;
        }
        $sc = self::scenario('check');
        $c = $this->client('STOCKD_CHECK_ADDR');
        $p = self::p() . 'check-';
        $offer = (int)self::env('STOCKD_CHECK_OFFER');
        [$ok, $short, $own] = ["{$p}ok", "{$p}short", "{$p}own"];
        $c->skuPut($ok, 0, supplier: ['supplier_id' => self::p() . 'sup-ok', 'offer_id' => $offer,
                                      'spec_id' => self::env('STOCKD_CHECK_SPEC')]);
        $c->skuPut($short, 0, supplier: ['supplier_id' => self::p() . 'sup-short', 'offer_id' => $offer,
                                         'spec_id' => self::env('STOCKD_CHECK_SPEC_SHORT')]);
        $c->skuPut($own, 1);
        $want = [$ok => 100000, $short => 50];
        $end = microtime(true) + $sc['sync_wait_ms'] / 1000;
        while (true) {
            $got = [];
            foreach ($want as $k => $_) {
                $got[$k] = $c->stockGet($k)->supplierReported;
            }
            if ($got === $want) {
                break;
            }
            self::assertLessThan($end, microtime(true), 'supplier figures not synced: ' . json_encode($got));
            usleep(50000);
        }

        // (a) passes: the ordinary record.
        $o = $c->reserve("{$p}a", $ok, 2, holdMs: 60000, check: true);
        self::assertSame(['held', 0, 2, null], [$o->status, $o->fromOwn, $o->fromSupplier, $o->reason]);
        self::assertSame('released', $c->release("{$p}a")->status);
        // (b) a cart, checked.
        $o = $c->reserve("{$p}b", [$ok => 1, $own => 1], holdMs: 60000, check: true);
        self::assertSame(['held', 2, 1], [$o->status, count($o->lines), $o->fromSupplier]);
        self::assertSame('released', $c->release("{$p}b")->status);
        // (c) refused by 1688's check: CheckFailed, again on a retry; the order failed.
        $e = null;
        try {
            $c->reserve("{$p}c", $short, 3, check: true);
        } catch (CheckFailed $caught) {
            $e = $caught;
        }
        self::assertNotNull($e, 'the checked reserve of the short spec was not refused');
        self::assertInstanceOf(Refused::class, $e);
        self::assertSame(['check_failed', false, "{$p}c"], [$e->errorCode, $e->retryable, $e->orderId()]);
        self::assertStringContainsString('500_004', $e->getMessage());
        try {
            $c->reserveWithRetry("{$p}c", $short, 3, totalMs: 5000, check: true);
            self::fail('the retry of a refused check was not refused');
        } catch (CheckFailed $again) {
            self::assertSame("{$p}c", $again->orderId());
        }
        self::assertSame('failed', $c->orderGet("{$p}c")->status);
        // (d) without the check the figure (50) says yes.
        $o = $c->reserve("{$p}d", $short, 3, holdMs: 60000);
        self::assertSame(['held', 3], [$o->status, $o->fromSupplier]);
        $c->release("{$p}d");
        // (e) not a bool: refused here, nothing sent.
        foreach (['yes', 1] as $bad) {
            try {
                $c->reserve("{$p}e", $ok, 1, check: $bad);
                self::fail('check ' . json_encode($bad) . ' was accepted');
            } catch (\TypeError $t) {
                self::assertStringContainsString('must be a bool', $t->getMessage());
            }
            try {
                $c->reserveWithRetry("{$p}e", $ok, 1, check: $bad);
                self::fail('check ' . json_encode($bad) . ' was accepted by reserveWithRetry');
            } catch (\TypeError $t) {
                self::assertStringContainsString('must be a bool', $t->getMessage());
            }
            $pl = $c->pipeline();
            try {
                $pl->reserve("{$p}e", [$ok => 1], check: $bad);
                self::fail('check ' . json_encode($bad) . ' was queued');
            } catch (\TypeError $t) {
                self::assertStringContainsString('must be a bool', $t->getMessage());
            }
            self::assertCount(0, $pl);
        }
        try {
            $c->orderGet("{$p}e");
            self::fail("{$p}e exists: a refused check was sent");
        } catch (NotFound) {
        }
        return self::$checkFailed = $e;
    }

    public function testCheck(): void
    {
        self::assertSame(CheckFailed::class, get_class($this->playCheck()));
    }

    /** Plays the stall sequence once; returns its errors by case. */
    private function playStall(): array
    {
        if (self::$stalled !== null) {
            return self::$stalled;
        }
        $c = $this->client('STOCKD_STALL_ADDR');
        $s = self::p() . 'stall';
        $c->skuPut($s, 100);
        $c->reserve(self::p() . 'stall-warm', $s, 1);

        [$host, $port] = explode(':', self::env('STOCKD_STALL_CONTROL'));
        $ctl = stream_socket_client("tcp://$host:$port", $errno, $errstr, 2);
        self::assertNotFalse($ctl, "control: $errstr");
        stream_set_timeout($ctl, 5);
        fwrite($ctl, "stall 1500\n");
        self::assertSame("ok\n", fgets($ctl));
        fclose($ctl);

        $a = $c->send('reserve', Client::reserveParams(self::p() . 'stall-a', $s, 1, null, 10000));
        $c->flush();
        usleep(100000);     // A's commit is under way (and hanging) before B arrives
        $b = $c->send('reserve', Client::reserveParams(self::p() . 'stall-b', $s, 1, null, 50));
        $cs = [];
        for ($i = 1; $i <= self::scenario('errors')['stall_c_count']; $i++) {
            $cs[] = $c->send('reserve', Client::reserveParams(self::p() . "stall-c$i", $s, 1, null, null));
        }
        $c->flush();
        $out = [];
        foreach (['deadline' => $b, 'outcome_unknown' => $a] + array_combine(
            array_map(static fn ($i) => "c$i", array_keys($cs)), $cs) as $case => $id) {
            [$err, $res] = $c->wait($id);
            self::assertNotNull($err, "stall sequence: $case succeeded: " . json_encode($res));
            $e = StockdException::fromWire($err);
            if ($case[0] !== 'c') {
                $out[$case] = $e;
            } elseif (!isset($out['busy']) && $e->errorCode === 'busy') {
                $out['busy'] = $e;
            } else {
                self::assertContains($e->errorCode, ['busy', 'unavailable'], $e->getMessage());
            }
        }
        self::assertArrayHasKey('busy', $out, 'no C was refused busy');
        try {
            $c->reserve(self::p() . 'stall-d', $s, 1);
            self::fail('stall sequence: D succeeded while the database is frozen');
        } catch (StockdException $e) {
            $out['unavailable'] = $e;
        }
        // The database is back: retries settle A (committed or decided afresh) and D.
        $oa = $c->reserveWithRetry(self::p() . 'stall-a', $s, 1, totalMs: 10000);
        $od = $c->reserveWithRetry(self::p() . 'stall-d', $s, 1, totalMs: 10000);
        self::assertSame(['confirmed', 'confirmed'], [$oa->status, $od->status]);
        self::assertSame(3, $c->stockGet($s)->ownReserved, 'warm + A + D, each once');
        return self::$stalled = $out;
    }

    public static function errorCases(): array
    {
        $out = [];
        foreach (self::scenario('errors')['cases'] as $c) {
            $out[$c['case']] = [$c];
        }
        return $out;
    }

    /** @dataProvider errorCases */
    public function testErrorCase(array $case): void
    {
        $p = self::p() . 'err-' . $case['case'];
        $c = $this->client();
        $e = null;
        try {
            switch ($case['case']) {
                case 'invalid':
                    $c->reserve($p, $p, 0);
                    break;
                case 'unknown_method':
                    $c->call('no.such.method');
                    break;
                case 'unknown_sku':
                    $c->reserve($p, $p . '-never-put', 1);
                    break;
                case 'insufficient':
                    $c->skuPut($p, 3);
                    $c->reserve($p, $p, 5);
                    break;
                case 'insufficient_lines':
                    $c->skuPut("$p-a", 5);
                    $c->skuPut("$p-b", 1);
                    $c->reserve($p, ["$p-a" => 1, "$p-b" => 2]);
                    break;
                case 'conflict':
                    $c->skuPut($p, 5);
                    $c->reserve($p, $p, 1);
                    $c->reserve($p, $p, 2);
                    break;
                case 'not_found':
                    $c->orderGet($p);
                    break;
                case 'invalid_state':
                    $c->skuPut($p, 5);
                    $c->reserve($p, $p, 1);
                    $c->release($p);
                    $c->ship($p);
                    break;
                case 'expired':
                    $e = $this->playSubscribe();
                    break;
                case 'unauthorized':
                    $this->client('STOCKD_ADDR', 'not-the-token')->skuPut($p, 1);
                    break;
                case 'too_large':
                    try {
                        $c->reserve(str_repeat('x', 70000), $p, 1);
                    } finally {
                        self::assertArrayHasKey('node', $c->ping(), 'the client reconnects after too_large');
                    }
                    break;
                case 'busy':
                case 'deadline':
                case 'unavailable':
                case 'outcome_unknown':
                    $e = $this->playStall()[$case['case']];
                    break;
                case 'set_aside':
                    $t0 = microtime(true);
                    try {
                        $c->reserveWithRetry($p, self::env('STOCKD_SET_ASIDE_SKU'), 1, totalMs: 10000);
                    } finally {
                        self::assertLessThan(2.0, microtime(true) - $t0, 'a set-aside SKU was retried');
                    }
                    break;
                case 'check_failed':
                    $e = $this->playCheck();
                    break;
                case 'internal':
                    $e = StockdException::fromWire(['code' => 'internal', 'message' => 'bug', 'retryable' => true]);
                    break;
                default:
                    self::fail("error case {$case['case']} of scenarios.json is not played by the PHP suite");
            }
        } catch (StockdException $caught) {
            $e = $caught;
        }
        self::assertNotNull($e, "case {$case['case']}: no error");
        self::assertSame('Stockd\\' . $case['exception'], get_class($e), "case {$case['case']}: " . $e->getMessage());
        self::assertSame($case['code'], $e->errorCode);
        self::assertSame($case['retryable'], $e->retryable);
        self::assertInstanceOf($case['retryable'] ? Retryable::class : Refused::class, $e);
        foreach ($case['detail'] ?? [] as $k => $v) {
            self::assertSame($v, $e->details[$k] ?? null, "detail $k of " . json_encode($e->details));
        }
    }

    public function testCluster(): void
    {
        $sc = self::scenario('cluster');
        $admin = $this->client('STOCKD_CLUSTER_ADDR');
        $buyers = [$this->client('STOCKD_CLUSTER_ADDR'), $this->client('STOCKD_CLUSTER_ADDR'),
                   $this->client('STOCKD_CLUSTER_ADDR')];
        for ($i = 0; $i < $sc['skus']; $i++) {
            self::hoodieRound($admin, $buyers, self::p() . "cl-$i", 2, self::p() . "cl$i");
        }

        $skus = [self::p() . 'cart-a', self::p() . 'cart-b', self::p() . 'cart-c'];
        $p = $admin->pipeline();
        foreach ($skus as $k) {
            $p->skuPut($k, 5);
        }
        foreach ($p->execute() as $r) {
            self::assertSame(5, $r->available, (string)($r instanceof \Throwable ? $r : ''));
        }
        $oid = self::p() . 'cart-1';
        $o = $admin->reserve($oid, [$skus[0] => 1, $skus[1] => 2, $skus[2] => 3], holdMs: 60000);
        self::assertSame(['held', 6, 3], [$o->status, $o->qty, count($o->lines)]);
        self::assertSame('confirmed', $admin->confirm($oid)->status);
        $got = $admin->orderGet($oid);
        self::assertSame(['confirmed', 3], [$got->status, count($got->lines)]);
        self::assertSame($skus, array_map(static fn ($l) => $l->sku, $got->lines));

        $nodes = [];
        foreach (explode(',', self::env('STOCKD_CLUSTER_NODES')) as $item) {
            $nodes[] = explode('=', $item, 2)[1];
        }
        $direct = new Client(array_merge([self::env('STOCKD_DEAD_ADDR')], $nodes), connectTimeoutMs: 2000);
        $again = $direct->orderGet($oid, $skus[0]);
        self::assertSame(['confirmed', $o->createdAt], [$again->status, $again->createdAt]);
        self::assertContains($direct->endpoint(), $nodes);

        self::assertSame('released', $admin->release($oid)->status);
        foreach ($skus as $k) {
            self::assertSame(5, $admin->stockGet($k)->available);
        }
    }
}
