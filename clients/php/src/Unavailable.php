<?php

declare(strict_types=1);

namespace Stockd;

/** `unavailable` without outcome: MariaDB or the SKU's owner unreachable; nothing changed. Retry (same order_id). `owner` names the owner in a cluster. */
class Unavailable extends Retryable
{
}
