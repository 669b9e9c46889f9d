<?php

declare(strict_types=1);

namespace Stockd;

/**
 * A final answer from stockd (PROTOCOL §5, retryable false): retrying the
 * same request gives the same answer. Each code has its subclass; a code
 * this client does not know yet arrives as a plain Refused.
 */
class Refused extends StockdException
{
}
