<?php

declare(strict_types=1);

namespace Stockd;

/** `expired`: confirm of an order whose hold lapsed; its stock went back. */
class Expired extends Refused
{
}
