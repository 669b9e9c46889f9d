<?php

declare(strict_types=1);

namespace Stockd;

/** `deadline`: still queued when deadline_ms passed; nothing changed. Retry (same order_id). */
class Deadline extends Retryable
{
}
