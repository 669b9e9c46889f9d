<?php

declare(strict_types=1);

namespace Stockd;

/** `unknown_method`: no such method (`method` is the name asked for). */
class UnknownMethod extends Refused
{
}
