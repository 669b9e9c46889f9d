<?php

declare(strict_types=1);

namespace Stockd;

/** `too_large`: the request exceeded the server's message limit; the server closed the connection (the client reconnects on the next call). */
class TooLarge extends Refused
{
}
