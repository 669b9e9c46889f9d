<?php

declare(strict_types=1);

namespace Stockd;

/** One line of an order of several SKUs (PROTOCOL §4 "Order record"). */
final class Line
{
    public function __construct(
        public readonly int $line,
        public readonly string $sku,
        public readonly int $qty,
        public readonly int $fromOwn,
        public readonly int $fromSupplier,
        public readonly string $status,
        public readonly ?string $upstreamOrderId,
    ) {
    }

    public static function fromWire(mixed $m): self
    {
        if (!is_array($m)) {
            throw new ProtocolError('order line is not a map', 'protocol');
        }
        return new self(
            Wire::int($m, 'line'),
            Wire::str($m, 'sku'),
            Wire::int($m, 'qty'),
            Wire::int($m, 'from_own'),
            Wire::int($m, 'from_supplier'),
            Wire::str($m, 'status'),
            Wire::optStr($m, 'upstream_order_id'),
        );
    }
}
