<?php

declare(strict_types=1);

namespace Stockd;

/** `invalid_state`: the order's `status` does not allow this operation. */
class InvalidState extends Refused
{
}
