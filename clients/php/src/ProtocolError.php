<?php

declare(strict_types=1);

namespace Stockd;

/**
 * The peer broke the wire contract: malformed MessagePack, a reply larger
 * than the client's limit, a message of the wrong shape. The connection is
 * closed. Usually a wrong address (not a stockd) or a bug: not retried.
 */
class ProtocolError extends StockdException
{
}
