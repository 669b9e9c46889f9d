<?php

declare(strict_types=1);

namespace Stockd;

/** `unknown_sku`: the SKU does not exist (with lines: `line`, `sku`). */
class UnknownSku extends Refused
{
}
