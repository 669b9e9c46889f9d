<?php

declare(strict_types=1);

namespace Stockd;

/**
 * An order record (PROTOCOL §4 "Order record"). Times are unix epoch
 * milliseconds. Optional fields are null when the server did not send them;
 * `lines` is empty for an order of one SKU. `raw` keeps the map as received,
 * so fields added to the protocol later are not lost.
 */
final class Order
{
    /** @param list<Line> $lines @param array<string, mixed> $raw */
    public function __construct(
        public readonly string $orderId,
        public readonly string $sku,
        public readonly int $qty,
        public readonly string $status,
        public readonly int $fromOwn,
        public readonly int $fromSupplier,
        public readonly int $available,
        public readonly int $createdAt,
        public readonly int $updatedAt,
        public readonly ?int $holdExpiresAt,
        public readonly ?string $upstreamOrderId,
        public readonly ?string $reason,
        public readonly ?int $purchasedAt,
        public readonly ?bool $supplierSettled,
        public readonly array $lines,
        public readonly array $raw,
    ) {
    }

    /** @throws ProtocolError when a required key is missing or of the wrong type */
    public static function fromWire(mixed $m): self
    {
        if (!is_array($m)) {
            throw new ProtocolError('order record is not a map', 'protocol');
        }
        $lines = [];
        foreach (is_array($m['lines'] ?? null) ? $m['lines'] : [] as $l) {
            $lines[] = Line::fromWire($l);
        }
        return new self(
            Wire::str($m, 'order_id'),
            Wire::str($m, 'sku'),
            Wire::int($m, 'qty'),
            Wire::str($m, 'status'),
            Wire::int($m, 'from_own'),
            Wire::int($m, 'from_supplier'),
            Wire::int($m, 'available'),
            Wire::int($m, 'created_at'),
            Wire::int($m, 'updated_at'),
            Wire::optInt($m, 'hold_expires_at'),
            Wire::optStr($m, 'upstream_order_id'),
            Wire::optStr($m, 'reason'),
            Wire::optInt($m, 'purchased_at'),
            isset($m['supplier_settled']) ? $m['supplier_settled'] === true : null,
            $lines,
            $m,
        );
    }

    /** True while the order holds stock (held, confirmed, purchased). */
    public function isLive(): bool
    {
        return in_array($this->status, ['held', 'confirmed', 'purchased'], true);
    }
}
