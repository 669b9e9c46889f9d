<?php

declare(strict_types=1);

namespace Stockd;

/** `busy`: a queue is full; nothing changed. Retry later (same order_id). */
class Busy extends Retryable
{
}
