<?php

declare(strict_types=1);

namespace Stockd;

/** `invalid`: bad params (`field` names the key). */
class Invalid extends Refused
{
}
