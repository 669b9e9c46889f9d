<?php

declare(strict_types=1);

namespace Stockd;

/**
 * `check_failed`: a checked reserve (reserve(..., check: true), or a SKU of a
 * supplier set to check_before_confirm) whose supplier units 1688's order
 * check (createOrder.preview) refused. getMessage() carries 1688's code and
 * words, orderId() the order, which stays failed with nothing held (a retry
 * with the same order_id answers check_failed again). Also when the stockd
 * has no supplier API to check with (then no order is recorded). A final
 * answer: tell the buyer those units cannot be had, do not retry.
 */
class CheckFailed extends Refused
{
}
