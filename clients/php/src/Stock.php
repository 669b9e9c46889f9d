<?php

declare(strict_types=1);

namespace Stockd;

/**
 * A SKU's stock map (PROTOCOL §4 `stock.get`). `available` is what a reserve
 * can take now: (ownOnHand - ownReserved) + max(0, supplierSellable - supplierReserved).
 * `supplier` (the 1688 mapping) and `trust` are set only for mapped SKUs.
 */
final class Stock
{
    /** @param array<string, mixed>|null $supplier @param array<string, mixed> $raw */
    public function __construct(
        public readonly string $sku,
        public readonly int $available,
        public readonly int $ownOnHand,
        public readonly int $ownReserved,
        public readonly int $supplierReported,
        public readonly int $supplierSellable,
        public readonly int $supplierReserved,
        public readonly int $supplierSyncedAt,
        public readonly string $mapping,
        public readonly ?array $supplier,
        public readonly ?float $trust,
        public readonly array $raw,
    ) {
    }

    public static function fromWire(mixed $m): self
    {
        if (!is_array($m)) {
            throw new ProtocolError('stock map is not a map', 'protocol');
        }
        $trust = $m['trust'] ?? null;
        return new self(
            Wire::str($m, 'sku'),
            Wire::int($m, 'available'),
            Wire::int($m, 'own_on_hand'),
            Wire::int($m, 'own_reserved'),
            Wire::int($m, 'supplier_reported'),
            Wire::int($m, 'supplier_sellable'),
            Wire::int($m, 'supplier_reserved'),
            Wire::int($m, 'supplier_synced_at'),
            Wire::str($m, 'mapping'),
            is_array($m['supplier'] ?? null) ? $m['supplier'] : null,
            is_int($trust) || is_float($trust) ? (float)$trust : null,
            $m,
        );
    }
}
