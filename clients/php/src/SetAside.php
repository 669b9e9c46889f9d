<?php

declare(strict_types=1);

namespace Stockd;

/**
 * `unavailable` with `set_aside: true` (retryable false): the SKU or order was
 * set aside when stockd loaded it, its rows in MariaDB cannot be trusted, and
 * every request naming it gets this until support repairs the rows and
 * restarts stockd (docs/operations.md, "Rows set aside"). Not an Unavailable:
 * a retry gets the same answer, so reserveWithRetry throws it at once.
 */
class SetAside extends Refused
{
}
