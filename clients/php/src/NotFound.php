<?php

declare(strict_types=1);

namespace Stockd;

/** `not_found`: no committed record of that order (or supplier). */
class NotFound extends Refused
{
}
