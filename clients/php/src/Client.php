<?php

declare(strict_types=1);

namespace Stockd;

/**
 * A blocking stockd client: one TCP connection at a time, used by one PHP
 * worker. Wire contract: proto/PROTOCOL.md.
 *
 *   $c = new Stockd\Client(['10.0.0.5:7400'], token: getenv('STOCKD_ADMIN_TOKEN') ?: null);
 *   $order = $c->reserveWithRetry('shop1:1001', 'hoodie-L', 1);
 *
 * Limits: connecting is bounded by connectTimeoutMs per endpoint; every call
 * by timeoutMs (no reply for that long: Timeout, the connection is closed);
 * a reply larger than maxReplyBytes or nested deeper than 32 is refused
 * before it is decoded (ProtocolError); at most pipelineWindow requests are
 * in flight at once; at most MAX_NOTIFICATIONS order updates wait unread.
 *
 * Endpoints: a balancer address, or the instances of a cluster. The client
 * connects to the first that answers, beginning where the last connection
 * was; after a connection is lost it begins with the next one. Use IP
 * addresses: a host name would be resolved by a blocking lookup that no
 * timeout bounds.
 *
 * The connection is opened on the first call (or connect()) and reopened
 * after a failure on the next call; a request is never resent by the client
 * on its own, except by reserveWithRetry, which keeps the order_id.
 */
final class Client
{
    public const DEFAULT_CONNECT_TIMEOUT_MS = 1000;
    /** Above a reserve's longest answer: its queueing deadline (2 s) plus the commit timeout (5 s). */
    public const DEFAULT_TIMEOUT_MS = 10000;
    public const DEFAULT_MAX_REPLY_BYTES = 4 << 20;
    /** Below stockd's --max-inflight-per-conn default (1,024). */
    public const DEFAULT_PIPELINE_WINDOW = 512;
    /** Order updates kept while nobody iterates subscribe(); newer ones are dropped and counted. */
    public const MAX_NOTIFICATIONS = 10000;
    private const MSGID_MAX = 0xffffffff;
    private const READ_CHUNK_BYTES = 65536;

    /** @var list<array{string, int, string}> host, port, "host:port" */
    private array $endpoints = [];
    private int $next = 0;
    /** @var resource|null */
    private $sock = null;
    private ?string $connectedTo = null;
    private string $rbuf = '';
    private string $wbuf = '';
    /** @var array<int, true> sent, no reply yet */
    private array $waiting = [];
    /** @var array<int, true> in flight when the last connection was lost: wait() says so */
    private array $lost = [];
    /** @var array<int, array{mixed, mixed}> replies (error, result) not yet taken */
    private array $replies = [];
    /** @var list<array<string, mixed>> order.update records not yet taken */
    private array $notes = [];
    private int $notesDropped = 0;
    private int $msgid = 0;
    /** stockd answered too_large and closes: reconnect before the next request. */
    private bool $doomed = false;

    /**
     * @param string|list<string> $endpoints "host:port" ("[v6]:port"), one or several
     * @param ?string $token the admin token (sku.put, stock.adjust), if stockd runs with one
     */
    public function __construct(
        string|array $endpoints,
        private readonly int $connectTimeoutMs = self::DEFAULT_CONNECT_TIMEOUT_MS,
        private int $timeoutMs = self::DEFAULT_TIMEOUT_MS,
        private readonly ?string $token = null,
        private readonly int $maxReplyBytes = self::DEFAULT_MAX_REPLY_BYTES,
        private readonly int $pipelineWindow = self::DEFAULT_PIPELINE_WINDOW,
    ) {
        foreach ((array)$endpoints as $e) {
            if (!is_string($e) || !preg_match('/^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+)):(\d{1,5})$/', $e, $m)
                || (int)$m[3] < 1 || (int)$m[3] > 65535) {
                throw new \InvalidArgumentException("endpoint must be HOST:PORT or [V6]:PORT: " . var_export($e, true));
            }
            $host = $m[1] !== '' ? '[' . $m[1] . ']' : $m[2];
            $this->endpoints[] = [$host, (int)$m[3], $e];
        }
        if ($this->endpoints === []) {
            throw new \InvalidArgumentException('no endpoint given');
        }
        foreach (['connectTimeoutMs' => $connectTimeoutMs, 'timeoutMs' => $timeoutMs,
                  'maxReplyBytes' => $maxReplyBytes, 'pipelineWindow' => $pipelineWindow] as $k => $v) {
            if ($v < 1) {
                throw new \InvalidArgumentException("$k must be at least 1");
            }
        }
    }

    public function __destruct()
    {
        $this->close();
    }

    // ------------------------------------------------------------ the methods

    /** @return array{node: string, version: string} */
    public function ping(): array
    {
        return $this->call('ping');
    }

    /**
     * Reserves stock for an order. $sku is one SKU (then $qty is required) or
     * the lines of a cart: ['hoodie-L' => 1, 'cap' => 2], or a list of
     * ['sku' => ..., 'qty' => ...] (lines of one SKU are summed by stockd; all
     * or nothing). Without $holdMs the order is confirmed at once; with it,
     * held until confirm() or the hold lapses.
     *
     * A repeat with the same order_id and the same lines returns the order's
     * current record: safe to retry. Refusals: Insufficient, UnknownSku,
     * Conflict, Invalid, CheckFailed. Retryable: Busy, Deadline, Unavailable,
     * and OutcomeUnknown (retry with the same order_id to learn the outcome).
     *
     * check: true asks stockd to have 1688 check the order's supplier units
     * (createOrder.preview) before it answers (PROTOCOL §4, "Checked
     * reserves"): a refusal throws CheckFailed (a Refused; the order stays
     * failed and a retry with the same order_id answers it again); a check
     * that could not be made in time throws Unavailable (retryable, reason()
     * "check_unavailable"). Own stock needs no check. $check must be a bool,
     * also for callers without strict_types: anything else throws a
     * \TypeError and sends nothing.
     *
     * @param string|array<mixed> $sku
     * @param bool $check
     */
    public function reserve(string $orderId, string|array $sku, ?int $qty = null,
                            ?int $holdMs = null, ?int $deadlineMs = null, mixed $check = false): Order
    {
        return Order::fromWire($this->call('reserve', self::reserveParams($orderId, $sku, $qty, $holdMs, $deadlineMs, $check)));
    }

    /**
     * reserve(), retried with the same order_id and exponential backoff with
     * jitter (from $backoffMs, doubling up to $backoffMaxMs) while the answer
     * is Retryable, until a final answer or until $totalMs have passed.
     * Returns the order (a retry after an unknown outcome returns the record
     * committed by the first attempt: never two reservations). Throws the
     * final Refused at once. Out of time: OutcomeUnknown if any attempt's
     * outcome stayed unknown (the order may exist: look it up or retry later
     * with the same order_id), else the last Retryable (nothing was reserved).
     *
     * @param string|array<mixed> $sku
     * @param bool $check see reserve()
     */
    public function reserveWithRetry(string $orderId, string|array $sku, ?int $qty = null,
                                     ?int $holdMs = null, ?int $deadlineMs = null,
                                     int $totalMs = 10000, int $backoffMs = 50,
                                     int $backoffMaxMs = 1000, mixed $check = false): Order
    {
        $params = self::reserveParams($orderId, $sku, $qty, $holdMs, $deadlineMs, $check);
        $end = microtime(true) + $totalMs / 1000;
        $unknown = null;
        $attempts = 0;
        $pause = max(1, $backoffMs);
        $savedTimeout = $this->timeoutMs;
        try {
            while (true) {
                $attempts++;
                $leftMs = (int)(($end - microtime(true)) * 1000);
                // An attempt never outlives the budget: neither our wait nor
                // stockd's queueing.
                $this->timeoutMs = max(1, min($savedTimeout, $leftMs));
                $p = $params;
                if ($leftMs < ($p['deadline_ms'] ?? 2000)) {
                    $p['deadline_ms'] = max(1, $leftMs);
                }
                try {
                    return Order::fromWire($this->call('reserve', $p));
                } catch (Retryable $e) {
                    if ($e instanceof OutcomeUnknown) {
                        $unknown = $e;
                    }
                    $sleepMs = random_int(intdiv($pause, 2), $pause);
                    $leftMs = (int)(($end - microtime(true)) * 1000);
                    if ($leftMs <= $sleepMs) {
                        if ($unknown !== null) {
                            throw new OutcomeUnknown("reserve $orderId: outcome unknown after $attempts attempts "
                                . "in {$totalMs} ms (last: {$e->getMessage()}); retry later with the same order_id",
                                $unknown->errorCode, true, $unknown->details, $e);
                        }
                        throw $e;
                    }
                    usleep($sleepMs * 1000);
                    $pause = min($backoffMaxMs, $pause * 2);
                }
            }
        } finally {
            $this->timeoutMs = $savedTimeout;
        }
    }

    /** A held order becomes confirmed (a confirmed one is returned as is). $sku: routing hint in a cluster. */
    public function confirm(string $orderId, ?string $sku = null): Order
    {
        return Order::fromWire($this->call('confirm', self::orderParams($orderId, $sku)));
    }

    /** Gives a held or confirmed order's stock back (status released); safe to repeat. */
    public function release(string $orderId, ?string $sku = null): Order
    {
        return Order::fromWire($this->call('release', self::orderParams($orderId, $sku)));
    }

    /** Marks a confirmed (or purchased) order shipped: its own units leave the warehouse. */
    public function ship(string $orderId, ?string $sku = null): Order
    {
        return Order::fromWire($this->call('ship', self::orderParams($orderId, $sku)));
    }

    /** The order's committed record; NotFound when stockd has none. */
    public function orderGet(string $orderId, ?string $sku = null): Order
    {
        return Order::fromWire($this->call('order.get', self::orderParams($orderId, $sku)));
    }

    public function stockGet(string $sku): Stock
    {
        return Stock::fromWire($this->call('stock.get', ['sku' => $sku]));
    }

    /**
     * Admin: creates or updates a SKU (the token given to the constructor is sent).
     *
     * @param ?array<string, mixed> $supplier the 1688 mapping {supplier_id, offer_id, spec_id, sku_id?, cap?}
     */
    public function skuPut(string $sku, ?int $ownOnHand = null, ?int $supplierReported = null,
                           ?array $supplier = null): Stock
    {
        return Stock::fromWire($this->call('sku.put', self::skuPutParams($sku, $ownOnHand, $supplierReported, $supplier)));
    }

    /** Admin: moves own_on_hand by $delta with a ledger reason. */
    public function stockAdjust(string $sku, int $delta, string $reason): Stock
    {
        return Stock::fromWire($this->call('stock.adjust', ['sku' => $sku, 'delta' => $delta, 'reason' => $reason]));
    }

    /**
     * Subscribes this connection to order updates (an order became purchased,
     * failed or expired) and yields each as an Order. Waits at most $waitMs
     * for the next one, then the generator ends (null: waits as long as it
     * takes). Updates are not persistent: after a ConnectionLost, subscribe
     * again and catch up with orderGet(). In a cluster, subscribe on every
     * instance (one Client per instance).
     *
     * @return \Generator<int, Order>
     */
    public function subscribe(?int $waitMs = null): \Generator
    {
        // Subscribed now, not at the first iteration (a generator's body waits for it).
        $this->call('order.subscribe');
        return $this->updates($waitMs);
    }

    /** @return \Generator<int, Order> */
    private function updates(?int $waitMs): \Generator
    {
        while (true) {
            if ($this->notes === []) {
                $this->ensureConnected();
                $deadline = $waitMs === null ? null : microtime(true) + $waitMs / 1000;
                if (!$this->pump($deadline, null, true, softDeadline: true)) {
                    return;     // no update within $waitMs; the subscription stays
                }
            }
            yield Order::fromWire(array_shift($this->notes));
        }
    }

    /** How many order updates were dropped because MAX_NOTIFICATIONS were waiting unread. */
    public function droppedNotifications(): int
    {
        return $this->notesDropped;
    }

    /**
     * Any method: params is the one map of PROTOCOL §2 (admin methods get the
     * token added). Returns the result as decoded; throws the error's class.
     *
     * @param array<string, mixed> $params
     */
    public function call(string $method, array $params = []): mixed
    {
        [$err, $res] = $this->wait($this->send($method, $params));
        if ($err !== null) {
            throw StockdException::fromWire($err);
        }
        return $res;
    }

    /** Requests queued on it go out together, without waiting for each reply (batch jobs). */
    public function pipeline(): Pipeline
    {
        return new Pipeline($this);
    }

    /** Opens the connection now (it is otherwise opened by the first call). */
    public function connect(): void
    {
        $this->ensureConnected();
    }

    /** "host:port" of the connected endpoint, or null. */
    public function endpoint(): ?string
    {
        return $this->connectedTo;
    }

    public function close(): void
    {
        if ($this->sock !== null) {
            @fclose($this->sock);
        }
        $this->sock = null;
        $this->connectedTo = null;
        $this->rbuf = $this->wbuf = '';
        $this->lost = $this->waiting;
        $this->waiting = $this->replies = [];
        $this->doomed = false;
    }

    // ------------------------------------------------------ requests by hand

    /**
     * Queues one request and returns its msgid; it goes out with flush() or
     * while waiting. For callers that interleave requests on several
     * clients; most code wants call() or pipeline().
     *
     * @param array<string, mixed> $params
     */
    public function send(string $method, array $params = []): int
    {
        $this->ensureConnected();
        if (count($this->waiting) >= $this->pipelineWindow) {
            throw new \LogicException("more than {$this->pipelineWindow} requests in flight: wait for replies first");
        }
        if ($this->token !== null && in_array($method, ['sku.put', 'stock.adjust', 'supplier.put'], true)
            && !array_key_exists('token', $params)) {
            $params['token'] = $this->token;
        }
        $this->msgid = $this->msgid >= self::MSGID_MAX ? 1 : $this->msgid + 1;
        $this->wbuf .= Wire::request($this->msgid, $method, $params);
        $this->waiting[$this->msgid] = true;
        return $this->msgid;
    }

    /** Writes what send() queued, bounded by the timeout (reading replies meanwhile). */
    public function flush(): void
    {
        $this->ensureConnected();
        $this->pump(microtime(true) + $this->timeoutMs / 1000, null, false, true);
    }

    /**
     * The reply to msgid as [error map or null, result]. Transport failures
     * throw (ConnectionLost, Timeout, ProtocolError): then every request in
     * flight on this connection has an unknown outcome.
     *
     * @return array{mixed, mixed}
     */
    public function wait(int $msgid): array
    {
        if (isset($this->lost[$msgid])) {
            unset($this->lost[$msgid]);
            throw new ConnectionLost("the connection was lost with request $msgid in flight; outcome unknown",
                'transport', true);
        }
        if (!isset($this->replies[$msgid])) {
            if (!isset($this->waiting[$msgid]) || $this->sock === null) {
                throw new \LogicException("no request $msgid in flight on this connection");
            }
            $this->pump(microtime(true) + $this->timeoutMs / 1000, $msgid, false);
        }
        $r = $this->replies[$msgid];
        unset($this->replies[$msgid]);
        return $r;
    }

    // ------------------------------------------------------------ internals

    /**
     * @internal the engine of Pipeline::execute()
     * @param list<array{string, array<string, mixed>, callable}> $entries method, params, decoder
     * @return list<mixed> per entry: the decoded result or a StockdException
     */
    public function runPipeline(array $entries): array
    {
        $n = count($entries);
        $out = array_fill(0, $n, null);
        if ($n === 0) {
            return $out;
        }
        try {
            $this->ensureConnected();
        } catch (ConnectionFailed $e) {
            return array_fill(0, $n, $e);
        }
        $ids = [];              // msgid => entry index, sent and unanswered
        $sent = 0;
        $done = 0;
        try {
            while ($done < $n) {
                while ($sent < $n && count($ids) < $this->pipelineWindow) {
                    [$method, $params] = $entries[$sent];
                    $ids[$this->send($method, $params)] = $sent++;
                }
                $this->pump(microtime(true) + $this->timeoutMs / 1000, null, false, false, true);
                foreach ($this->replies as $id => [$err, $res]) {
                    if (!isset($ids[$id])) {
                        continue;
                    }
                    $k = $ids[$id];
                    unset($ids[$id], $this->replies[$id]);
                    $done++;
                    if ($err !== null) {
                        $out[$k] = StockdException::fromWire($err);
                        continue;
                    }
                    try {
                        $out[$k] = ($entries[$k][2])($res);
                    } catch (ProtocolError $e) {
                        $out[$k] = $e;
                    }
                }
            }
        } catch (StockdException $e) {
            foreach ($ids as $k) {
                $out[$k] = $e;
            }
            for ($k = $sent; $k < $n; $k++) {
                $out[$k] = new Retryable('not sent: the connection was lost before this request went out',
                    'transport', true, [], $e);
            }
        }
        return $out;
    }

    /**
     * @internal
     * @param string|array<mixed> $sku
     * @return array<string, mixed>
     */
    public static function reserveParams(string $orderId, string|array $sku, ?int $qty,
                                         ?int $holdMs, ?int $deadlineMs, mixed $check = false): array
    {
        // Not a bool parameter: PHP would turn "no" or 0 into a bool for a
        // caller without strict_types, and a check must be asked for exactly.
        if (!is_bool($check)) {
            throw new \TypeError('reserve: $check must be a bool (true or false), not ' . get_debug_type($check));
        }
        $p = ['order_id' => $orderId];
        if (is_string($sku)) {
            if ($qty === null) {
                throw new \InvalidArgumentException('reserve of one SKU needs a qty');
            }
            $p['sku'] = $sku;
            $p['qty'] = $qty;
        } else {
            if ($qty !== null) {
                throw new \InvalidArgumentException('reserve with lines takes no qty: give it per line');
            }
            $lines = [];
            if (array_is_list($sku)) {
                foreach ($sku as $l) {
                    $s = $l['sku'] ?? $l[0] ?? null;
                    $q = $l['qty'] ?? $l[1] ?? null;
                    if (!is_array($l) || !is_string($s) || !is_int($q)) {
                        throw new \InvalidArgumentException("a line is ['sku' => string, 'qty' => int]");
                    }
                    $lines[] = ['sku' => $s, 'qty' => $q];
                }
            } else {
                foreach ($sku as $s => $q) {
                    if (!is_int($q)) {
                        throw new \InvalidArgumentException("lines map SKUs to int quantities");
                    }
                    // PHP turns the key "123" into the int 123; the SKU is the string.
                    $lines[] = ['sku' => (string)$s, 'qty' => $q];
                }
            }
            $p['lines'] = $lines;
        }
        if ($holdMs !== null) {
            $p['hold_ms'] = $holdMs;
        }
        if ($deadlineMs !== null) {
            $p['deadline_ms'] = $deadlineMs;
        }
        if ($check) {
            $p['check'] = true;
        }
        return $p;
    }

    /**
     * @internal
     * @return array<string, string>
     */
    public static function orderParams(string $orderId, ?string $sku): array
    {
        return $sku === null ? ['order_id' => $orderId] : ['order_id' => $orderId, 'sku' => $sku];
    }

    /**
     * @internal
     * @param ?array<string, mixed> $supplier
     * @return array<string, mixed>
     */
    public static function skuPutParams(string $sku, ?int $ownOnHand, ?int $supplierReported, ?array $supplier): array
    {
        $p = ['sku' => $sku];
        if ($ownOnHand !== null) {
            $p['own_on_hand'] = $ownOnHand;
        }
        if ($supplierReported !== null) {
            $p['supplier_reported'] = $supplierReported;
        }
        if ($supplier !== null) {
            $p['supplier'] = $supplier;
        }
        return $p;
    }

    private function ensureConnected(): void
    {
        if ($this->doomed) {
            $this->close();
        }
        if ($this->sock !== null) {
            return;
        }
        $errors = [];
        $n = count($this->endpoints);
        for ($i = 0; $i < $n; $i++) {
            $k = ($this->next + $i) % $n;
            [$host, $port, $label] = $this->endpoints[$k];
            $ctx = stream_context_create(['socket' => ['tcp_nodelay' => true]]);
            $s = @stream_socket_client("tcp://$host:$port", $errno, $errstr,
                $this->connectTimeoutMs / 1000, STREAM_CLIENT_CONNECT, $ctx);
            if ($s === false) {
                $errors[] = "$label: " . ($errstr !== '' ? $errstr : "error $errno");
                continue;
            }
            stream_set_blocking($s, false);
            stream_set_read_buffer($s, 0);
            stream_set_write_buffer($s, 0);
            $this->sock = $s;
            $this->next = $k;
            $this->connectedTo = $label;
            return;
        }
        $this->next = ($this->next + 1) % $n;
        throw new ConnectionFailed('cannot connect to stockd: ' . implode('; ', $errors), 'transport', true);
    }

    /**
     * Writes and reads until: the reply to $wantId is there, an update is
     * there ($wantNote), the output is written ($flushOnly), or any reply
     * is there ($wantAny): then true. $deadline null = no limit (a subscriber
     * waiting). At the deadline: false with $softDeadline (nothing was owed),
     * else Timeout and the connection is closed (a late reply could not be
     * told from the next one).
     */
    private function pump(?float $deadline, ?int $wantId, bool $wantNote, bool $flushOnly = false,
                          bool $wantAny = false, bool $softDeadline = false): bool
    {
        while (true) {
            if (($wantId !== null && isset($this->replies[$wantId]))
                || ($wantNote && $this->notes !== [])
                || ($flushOnly && $this->wbuf === '')
                || ($wantAny && $this->replies !== [])) {
                return true;
            }
            if ($this->sock === null) {
                throw new ConnectionLost('the connection to stockd is closed', 'transport', true);
            }
            $sec = null;
            $usec = 0;
            if ($deadline !== null) {
                $left = $deadline - microtime(true);
                if ($left <= 0) {
                    if ($softDeadline) {
                        return false;
                    }
                    $this->failWith(new Timeout(
                        "no reply from stockd at {$this->connectedTo} within {$this->timeoutMs} ms; outcome unknown",
                        'timeout', true));
                }
                $sec = (int)$left;
                $usec = (int)(($left - $sec) * 1e6);
            }
            $r = [$this->sock];
            $w = $this->wbuf !== '' ? [$this->sock] : [];
            $e = null;
            if (@stream_select($r, $w, $e, $sec, $usec) === false) {
                continue;       // a signal interrupted the wait
            }
            if ($w !== []) {
                $k = @fwrite($this->sock, $this->wbuf);
                if ($k === false) {
                    $this->failWith(new ConnectionLost("write to stockd at {$this->connectedTo} failed; "
                        . 'outcome of requests in flight unknown', 'transport', true));
                }
                $this->wbuf = (string)substr($this->wbuf, $k);
            }
            if ($r !== []) {
                $data = @fread($this->sock, self::READ_CHUNK_BYTES);
                if ($data === false || ($data === '' && feof($this->sock))) {
                    $this->failWith(new ConnectionLost("stockd at {$this->connectedTo} closed the connection; "
                        . 'outcome of requests in flight unknown', 'transport', true));
                }
                $this->rbuf .= $data;
                try {
                    $this->parse();
                } catch (ProtocolError $pe) {
                    $this->failWith($pe);
                }
            }
        }
    }

    /** Takes every complete message off the read buffer. */
    private function parse(): void
    {
        $pos = 0;
        $len = strlen($this->rbuf);
        while ($pos < $len) {
            $end = Wire::frameEnd($this->rbuf, $pos, $this->maxReplyBytes);
            if ($end < 0) {
                break;
            }
            $m = @msgpack_unpack(substr($this->rbuf, $pos, $end - $pos));
            $pos = $end;
            if (is_array($m) && count($m) === 4 && ($m[0] ?? null) === 1 && is_int($m[1] ?? null)) {
                if (!isset($this->waiting[$m[1]])) {
                    throw new ProtocolError("stockd answered msgid {$m[1]}, which is not in flight", 'protocol');
                }
                unset($this->waiting[$m[1]]);
                $this->replies[$m[1]] = [$m[2], $m[3]];
                if (is_array($m[2]) && ($m[2]['code'] ?? null) === 'too_large') {
                    $this->doomed = true;   // stockd closes after this reply
                }
            } elseif (is_array($m) && count($m) === 3 && ($m[0] ?? null) === 2) {
                if ($m[1] === 'order.update' && is_array($m[2]) && is_array($m[2][0] ?? null)) {
                    if (count($this->notes) >= self::MAX_NOTIFICATIONS) {
                        $this->notesDropped++;
                    } else {
                        $this->notes[] = $m[2][0];
                    }
                }
                // Other notifications are not part of the contract yet: ignored.
            } else {
                throw new ProtocolError('stockd sent a message that is neither a response nor a notification', 'protocol');
            }
        }
        $this->rbuf = (string)substr($this->rbuf, $pos);
    }

    /** Closes the connection (every request in flight is lost) and throws $e. */
    private function failWith(StockdException $e): never
    {
        $this->close();
        $this->next = ($this->next + 1) % count($this->endpoints);
        throw $e;
    }
}
