<?php

declare(strict_types=1);

namespace Stockd;

/**
 * Requests queued here go out back to back on the client's connection when
 * execute() is called (at most the client's pipelineWindow in flight; the
 * rest follow as replies come in), and their results come back in the order
 * queued. One failure does not stop the others: each result is the typed
 * result or the StockdException for that request.
 *
 *   $p = $client->pipeline();
 *   foreach ($rows as $r) { $p->reserve($r['order_id'], $r['sku'], $r['qty']); }
 *   foreach ($p->execute() as $i => $res) {
 *       if ($res instanceof Stockd\Retryable) { ... retry row $i with the same order_id ... }
 *   }
 *
 * A transport failure gives every request still in flight the same
 * OutcomeUnknown (ConnectionLost, Timeout) and every request not yet sent a
 * plain Retryable.
 */
final class Pipeline implements \Countable
{
    /** @var list<array{string, array<string, mixed>, callable}> */
    private array $entries = [];

    public function __construct(private readonly Client $client)
    {
    }

    /**
     * @param string|array<mixed> $sku see Client::reserve()
     * @param bool $check see Client::reserve(): a non-bool throws \TypeError here, nothing queued
     */
    public function reserve(string $orderId, string|array $sku, ?int $qty = null,
                            ?int $holdMs = null, ?int $deadlineMs = null, mixed $check = false): int
    {
        return $this->add('reserve', Client::reserveParams($orderId, $sku, $qty, $holdMs, $deadlineMs, $check),
                          [Order::class, 'fromWire']);
    }

    public function confirm(string $orderId, ?string $sku = null): int
    {
        return $this->add('confirm', Client::orderParams($orderId, $sku), [Order::class, 'fromWire']);
    }

    public function release(string $orderId, ?string $sku = null): int
    {
        return $this->add('release', Client::orderParams($orderId, $sku), [Order::class, 'fromWire']);
    }

    public function ship(string $orderId, ?string $sku = null): int
    {
        return $this->add('ship', Client::orderParams($orderId, $sku), [Order::class, 'fromWire']);
    }

    public function orderGet(string $orderId, ?string $sku = null): int
    {
        return $this->add('order.get', Client::orderParams($orderId, $sku), [Order::class, 'fromWire']);
    }

    public function stockGet(string $sku): int
    {
        return $this->add('stock.get', ['sku' => $sku], [Stock::class, 'fromWire']);
    }

    /** @param ?array<string, mixed> $supplier */
    public function skuPut(string $sku, ?int $ownOnHand = null, ?int $supplierReported = null,
                           ?array $supplier = null): int
    {
        return $this->add('sku.put', Client::skuPutParams($sku, $ownOnHand, $supplierReported, $supplier),
            [Stock::class, 'fromWire']);
    }

    /** @param array<string, mixed> $params */
    public function call(string $method, array $params = []): int
    {
        return $this->add($method, $params, static fn (mixed $r): mixed => $r);
    }

    public function count(): int
    {
        return count($this->entries);
    }

    /**
     * Sends everything queued and returns one result per request, in order.
     * The pipeline is empty afterwards.
     *
     * @return list<Order|Stock|StockdException|mixed>
     */
    public function execute(): array
    {
        $entries = $this->entries;
        $this->entries = [];
        return $this->client->runPipeline($entries);
    }

    /** @param array<string, mixed> $params */
    private function add(string $method, array $params, callable $decode): int
    {
        $this->entries[] = [$method, $params, $decode];
        return count($this->entries) - 1;
    }
}
