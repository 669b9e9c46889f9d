<?php

declare(strict_types=1);

namespace Stockd;

/** No endpoint accepted a connection in time; nothing was sent. */
class ConnectionFailed extends Retryable
{
}
