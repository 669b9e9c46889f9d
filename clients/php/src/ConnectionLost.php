<?php

declare(strict_types=1);

namespace Stockd;

/**
 * The connection closed or failed while requests were in flight: whether
 * they were carried out is unknown. The client reconnects on the next call.
 */
class ConnectionLost extends OutcomeUnknown
{
}
