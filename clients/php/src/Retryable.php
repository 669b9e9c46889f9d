<?php

declare(strict_types=1);

namespace Stockd;

/**
 * Nothing was decided, or (OutcomeUnknown) it is not known whether it was:
 * send the same request again, with the same order_id, after a pause.
 * Client::reserveWithRetry does exactly that.
 */
class Retryable extends StockdException
{
}
