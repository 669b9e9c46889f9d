<?php

declare(strict_types=1);

namespace Stockd;

/**
 * The request may or may not have been carried out: stockd lost track of its
 * commit (`unavailable` with `outcome: "unknown"`), or the connection broke or
 * timed out after the request was sent. Retry with the same order_id: a
 * reserve is idempotent, so the retry returns the committed record or decides
 * afresh, and never reserves twice.
 */
class OutcomeUnknown extends Retryable
{
}
