/* purchase.c — the purchase worker (include/stockd/purchase.h). Being written. */
#include "stockd/purchase.h"
