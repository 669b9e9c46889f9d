<?php

declare(strict_types=1);

namespace Stockd;

/**
 * The common base of every error this client raises.
 *
 * `errorCode` is the server's code from PROTOCOL §5 (`insufficient`, `busy`,
 * ...) or, for failures on this side of the wire, `transport`, `timeout` or
 * `protocol`. Branch on the class (or on `errorCode`), never on the message.
 *
 * The class tells what to do:
 *   Refused (and its subclasses)   a final answer: do not retry, tell the buyer;
 *   Retryable                      nothing changed: retry with the same order_id;
 *   OutcomeUnknown (a Retryable)   maybe it happened: retry with the same
 *                                  order_id, the answer says what happened;
 *   ProtocolError                  the other side is not a stockd that keeps the
 *                                  contract (wrong address, a bug): alert.
 */
class StockdException extends \RuntimeException
{
    /** @param array<string, mixed> $details the error map's other keys */
    public function __construct(
        string $message,
        public readonly string $errorCode = 'transport',
        public readonly bool $retryable = false,
        public readonly array $details = [],
        ?\Throwable $previous = null,
    ) {
        parent::__construct($message, 0, $previous);
    }

    /** Maps the server's code to its class; unknown codes fall back on `retryable`. */
    private const CLASSES = [
        'invalid' => Invalid::class,
        'unknown_method' => UnknownMethod::class,
        'unknown_sku' => UnknownSku::class,
        'insufficient' => Insufficient::class,
        'conflict' => Conflict::class,
        'not_found' => NotFound::class,
        'invalid_state' => InvalidState::class,
        'expired' => Expired::class,
        'busy' => Busy::class,
        'deadline' => Deadline::class,
        'unavailable' => Unavailable::class,
        'unauthorized' => Unauthorized::class,
        'too_large' => TooLarge::class,
        'internal' => Internal::class,
        'check_failed' => CheckFailed::class,
    ];

    /**
     * The exception for an error map as the server sends it
     * (`{"code", "message", "retryable", ...details}`).
     */
    public static function fromWire(mixed $err): self
    {
        if (!is_array($err) || !is_string($err['code'] ?? null)) {
            return new ProtocolError('stockd sent an error that is not a map with a code: '
                . substr(var_export($err, true), 0, 200), 'protocol');
        }
        $code = $err['code'];
        $message = is_string($err['message'] ?? null) ? $err['message'] : $code;
        $retryable = ($err['retryable'] ?? false) === true;
        $details = $err;
        unset($details['code'], $details['message'], $details['retryable']);
        if ($code === 'unavailable' && ($details['set_aside'] ?? null) === true) {
            $class = SetAside::class;
        } elseif ($code === 'unavailable' && ($details['outcome'] ?? null) === 'unknown') {
            $class = OutcomeUnknown::class;
        } elseif (isset(self::CLASSES[$code])) {
            $class = self::CLASSES[$code];
        } else {
            $class = $retryable ? Retryable::class : Refused::class;
        }
        return new $class("$code: $message", $code, $retryable, $details);
    }

    /** `available` (insufficient): what could be had right then. */
    public function available(): ?int
    {
        $v = $this->details['available'] ?? null;
        return is_int($v) ? $v : null;
    }

    /** `field` (invalid): the offending parameter, e.g. `qty` or `lines[3].qty`. */
    public function field(): ?string
    {
        return $this->detailString('field');
    }

    /** `status` (invalid_state): the order's current status. */
    public function status(): ?string
    {
        return $this->detailString('status');
    }

    /** `line` (insufficient, unknown_sku with lines): index of the first line not met. */
    public function line(): ?int
    {
        $v = $this->details['line'] ?? null;
        return is_int($v) ? $v : null;
    }

    /** `sku` (insufficient, unknown_sku with lines). */
    public function sku(): ?string
    {
        return $this->detailString('sku');
    }

    /** `owner` (unavailable in a cluster): the node that owns the SKU. */
    public function owner(): ?string
    {
        return $this->detailString('owner');
    }

    /**
     * `order_id` (check_failed): the order 1688's check refused (null when
     * there was no supplier API to ask: then no order was recorded).
     */
    public function orderId(): ?string
    {
        return $this->detailString('order_id');
    }

    /**
     * `reason` (unavailable of a checked reserve): "check_unavailable", the
     * 1688 check could not be made in time; nothing held.
     */
    public function reason(): ?string
    {
        return $this->detailString('reason');
    }

    private function detailString(string $k): ?string
    {
        $v = $this->details[$k] ?? null;
        return is_string($v) ? $v : null;
    }
}
