<?php

declare(strict_types=1);

namespace Stockd;

/**
 * No reply within the client's timeout. The connection is closed (a late
 * reply could not be told apart), so the request's fate is unknown.
 */
class Timeout extends OutcomeUnknown
{
}
