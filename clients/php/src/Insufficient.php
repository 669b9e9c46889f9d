<?php

declare(strict_types=1);

namespace Stockd;

/**
 * `insufficient`: not enough stock. available() is what could be had right
 * then; for an order of several lines, line() and sku() name the first line
 * that could not be met. A final answer: tell the buyer, do not retry.
 */
class Insufficient extends Refused
{
}
