<?php

declare(strict_types=1);

namespace Stockd;

/** `internal`: a bug or out of memory in stockd. Retryable (same order_id). */
class Internal extends Retryable
{
}
