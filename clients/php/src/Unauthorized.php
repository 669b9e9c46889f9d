<?php

declare(strict_types=1);

namespace Stockd;

/** `unauthorized`: admin token missing or wrong. */
class Unauthorized extends Refused
{
}
