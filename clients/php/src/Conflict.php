<?php

declare(strict_types=1);

namespace Stockd;

/** `conflict`: the order_id is already used with another sku, qty or lines. */
class Conflict extends Refused
{
}
