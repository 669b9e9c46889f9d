/* stockctl — command-line client for stockd, built on the client library.
 *
 * Exit codes: 0 ok, 1 the server answered an error (or an import had bad
 * rows), 2 usage, 3 transport or protocol failure. With --json the result,
 * or the error, is printed to stdout as one JSON object.
 *
 * Everything but main lives in stockctl_lib (stockctl_internal.h lists the
 * files), so that its unit test links the same code.
 */
#include "stockctl_internal.h"

int main(int argc, char **argv)
{
    return ctl_main(argc, argv);
}
