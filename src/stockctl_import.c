/* stockctl_import.c — `stockctl import FILE.csv`: a header naming the
 * columns, then one sku.put per row, pipelined CTL_IMPORT_CHUNK at a time;
 * bad lines are counted and the first ones shown, the rest goes on.
 */
#include "stockctl_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define CTL_IMPORT_CHUNK 256u        /* sku.put requests in flight per round */
#define CTL_IMPORT_MAX_LINE 4096u
#define CTL_IMPORT_SHOW_ERRORS 10u

typedef struct import_row {
    unsigned long line;
    char sku[STOCKD_MAX_ID_BYTES + 1];
    bool has_own, has_rep;
    int64_t own, rep;
} import_row;

typedef struct import_err {
    unsigned long line;
    char msg[240];
} import_err;

typedef struct import_state {
    stockd_client *c;
    bool json;
    unsigned long rows, imported, rejected, failed;
    import_err errs[CTL_IMPORT_SHOW_ERRORS];
    unsigned n_errs;
    import_row chunk[CTL_IMPORT_CHUNK];
    uint32_t msgid[CTL_IMPORT_CHUNK];
    size_t n;
} import_state;

static void import_note(import_state *st, unsigned long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Keeps the errors of the lowest line numbers for the summary (replies
 * arrive in any order, rejected lines are seen before earlier rows'
 * replies), so the summary shows the first bad lines of the file. */
static void import_note(import_state *st, unsigned long line, const char *fmt, ...)
{
    import_err *e = NULL;
    if (st->n_errs < CTL_IMPORT_SHOW_ERRORS) {
        e = &st->errs[st->n_errs++];
    } else {
        for (unsigned i = 0; i < st->n_errs; i++)
            if (!e || st->errs[i].line > e->line)
                e = &st->errs[i];
        if (e->line < line)
            return;
    }
    e->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
}

static int import_err_cmp(const void *a, const void *b)
{
    unsigned long x = ((const import_err *)a)->line, y = ((const import_err *)b)->line;
    return (x > y) - (x < y);
}

/* Splits a CSV line in place (RFC 4180 quoting, no embedded newlines).
 * Returns the field count, or -1 on broken quoting / too many fields. */
int ctl_csv_split(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        if (n == max)
            return -1;
        while (*p == ' ' || *p == '\t')
            p++;
        char *out = p, *start = p;
        if (*p == '"') {
            for (p++;; p++) {
                if (*p == '\0')
                    return -1;
                if (*p == '"') {
                    if (p[1] != '"')
                        break;
                    p++;
                }
                *out++ = *p;
            }
            p++;
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p != ',' && *p != '\0')
                return -1;
        } else {
            while (*p != ',' && *p != '\0')
                p++;
            out = p;
            while (out > start && (out[-1] == ' ' || out[-1] == '\t'))
                out--;
        }
        char sep = *p;
        *out = '\0';
        fields[n++] = start;
        if (sep == '\0')
            return n;
        p++;
    }
}

static bool import_int(const char *s, bool *has, int64_t *v)
{
    *has = *s != '\0';
    return !*has || (s[0] != '-' && ctl_parse_i64(s, 0, CTL_MAX_QTY_ARG, v));
}

/* Validates one data line into a row. Returns false with a reason noted. */
static bool import_parse_row(import_state *st, char *line, unsigned long lineno, int ncols,
                             import_row *row)
{
    char *f[4];
    int n = ctl_csv_split(line, f, 4);
    if (n != ncols) {
        import_note(st, lineno, n < 0 ? "bad CSV quoting" : "expected %d fields, got %d",
                    ncols, n);
        return false;
    }
    size_t len = strlen(f[0]);
    if (len == 0 || len > STOCKD_MAX_ID_BYTES) {
        import_note(st, lineno, "sku must be 1..%d bytes", STOCKD_MAX_ID_BYTES);
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)f[0][i] < 0x20 || f[0][i] == 0x7f) {
            import_note(st, lineno, "sku contains a control character");
            return false;
        }
    }
    memcpy(row->sku, f[0], len + 1);
    row->line = lineno;
    if (!import_int(f[1], &row->has_own, &row->own)) {
        import_note(st, lineno, "bad own_on_hand '%.40s' (0..%lld)", f[1], CTL_MAX_QTY_ARG);
        return false;
    }
    row->has_rep = false;
    if (ncols == 3 && !import_int(f[2], &row->has_rep, &row->rep)) {
        import_note(st, lineno, "bad supplier_reported '%.40s' (0..%lld)", f[2],
                    CTL_MAX_QTY_ARG);
        return false;
    }
    return true;
}

/* Sends the chunk pipelined and matches the replies by msgid. Returns
 * STOCKD_OK or the transport/protocol failure that stopped it. */
static stockd_rc import_flush(import_state *st)
{
    size_t sent = 0;
    stockd_rc rc = STOCKD_OK;
    for (; sent < st->n; sent++) {
        const import_row *row = &st->chunk[sent];
        stockd_sku_put_req req = {.sku = row->sku, .has_own_on_hand = row->has_own,
                                  .own_on_hand = row->own, .has_supplier_reported = row->has_rep,
                                  .supplier_reported = row->rep};
        rc = stockd_send_sku_put(st->c, &req, &st->msgid[sent]);
        if (rc != STOCKD_OK)
            break;
    }
    for (size_t got = 0; rc == STOCKD_OK && got < sent; got++) {
        stockd_reply reply;
        stockd_rc r = stockd_recv_any(st->c, &reply);
        if (r != STOCKD_OK && r != STOCKD_ERR_SERVER) {
            rc = r;
            break;
        }
        size_t i = 0;
        while (i < sent && st->msgid[i] != reply.msgid)
            i++;
        if (i == sent) {
            rc = STOCKD_ERR_PROTOCOL;
            break;
        }
        if (r == STOCKD_OK) {
            st->imported++;
        } else {
            const stockd_error *e = stockd_client_error(st->c);
            st->failed++;
            import_note(st, st->chunk[i].line, "sku %s: %s: %s%s%s", st->chunk[i].sku, e->code,
                        e->message, e->field[0] ? " field " : "", e->field);
        }
    }
    st->n = 0;
    return rc;
}

static void import_summary(import_state *st, const char *path)
{
    qsort(st->errs, st->n_errs, sizeof(st->errs[0]), import_err_cmp);
    if (!st->json) {
        for (unsigned i = 0; i < st->n_errs; i++)
            fprintf(stderr, "line %lu: %s\n", st->errs[i].line, st->errs[i].msg);
        if (st->rejected + st->failed > st->n_errs)
            fprintf(stderr, "... and %lu more errors\n",
                    st->rejected + st->failed - st->n_errs);
        printf("import %s: %lu rows, %lu imported, %lu rejected (bad lines), %lu failed "
               "(server errors)\n", path, st->rows, st->imported, st->rejected, st->failed);
        return;
    }
    printf("{\"file\":");
    ctl_json_str(stdout, path, strlen(path));
    printf(",\"rows\":%lu,\"imported\":%lu,\"rejected\":%lu,\"failed\":%lu,\"errors\":[",
           st->rows, st->imported, st->rejected, st->failed);
    for (unsigned i = 0; i < st->n_errs; i++) {
        printf("%s{\"line\":%lu,\"error\":", i ? "," : "", st->errs[i].line);
        ctl_json_str(stdout, st->errs[i].msg, strlen(st->errs[i].msg));
        putchar('}');
    }
    printf("]}\n");
}

/* Reads one line into buf (without the newline). Returns 1, 0 at EOF, or
 * -1 when the line was longer than the buffer (the rest is skipped). */
static int import_read_line(FILE *f, char *buf, size_t len)
{
    if (!fgets(buf, (int)len, f))
        return 0;
    size_t n = strlen(buf);
    if (n > 0 && buf[n - 1] == '\n') {
        buf[--n] = '\0';
        if (n > 0 && buf[n - 1] == '\r')
            buf[--n] = '\0';
        return 1;
    }
    if (feof(f))
        return 1;   /* last line without a newline */
    int ch;
    while ((ch = fgetc(f)) != EOF && ch != '\n')
        ;
    return -1;
}

/* The header names the columns: sku,own_on_hand[,supplier_reported]. */
static int import_header(char *line)
{
    if ((unsigned char)line[0] == 0xef && (unsigned char)line[1] == 0xbb &&
        (unsigned char)line[2] == 0xbf)
        memmove(line, line + 3, strlen(line + 3) + 1);   /* UTF-8 BOM from spreadsheets */
    char *f[4];
    int n = ctl_csv_split(line, f, 4);
    if (n < 2 || strcmp(f[0], "sku") != 0 || strcmp(f[1], "own_on_hand") != 0)
        return -1;
    if (n == 3 && strcmp(f[2], "supplier_reported") != 0)
        return -1;
    return n == 2 || n == 3 ? n : -1;
}

int ctl_import(stockd_client *c, const char *path, bool json)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!f) {
        fprintf(stderr, "stockctl: cannot open %s: %s\n", path, strerror(errno));
        return EXIT_USAGE;
    }
    static import_state st;   /* large (chunk tables); main is single-threaded */
    memset(&st, 0, sizeof(st));
    st.c = c;
    st.json = json;
    stockd_client_set_max_inflight(c, CTL_IMPORT_CHUNK);
    char line[CTL_IMPORT_MAX_LINE + 2];
    unsigned long lineno = 0;
    int ncols = -1, r;
    stockd_rc rc = STOCKD_OK;
    while (rc == STOCKD_OK && (r = import_read_line(f, line, sizeof(line))) != 0) {
        lineno++;
        if (r > 0 && line[strspn(line, " \t")] == '\0')
            continue;   /* blank line */
        if (ncols < 0) {
            if (r < 0 || (ncols = import_header(line)) < 0) {
                fprintf(stderr, "stockctl: %s line %lu: header must be "
                        "'sku,own_on_hand' or 'sku,own_on_hand,supplier_reported'\n",
                        path, lineno);
                if (f != stdin)
                    fclose(f);
                return EXIT_USAGE;
            }
            continue;
        }
        st.rows++;
        if (r < 0) {
            st.rejected++;
            import_note(&st, lineno, "line longer than %u bytes", CTL_IMPORT_MAX_LINE);
            continue;
        }
        if (!import_parse_row(&st, line, lineno, ncols, &st.chunk[st.n])) {
            st.rejected++;
            continue;
        }
        if (++st.n == CTL_IMPORT_CHUNK)
            rc = import_flush(&st);
    }
    bool read_error = ferror(f);
    if (f != stdin)
        fclose(f);
    if (rc == STOCKD_OK && st.n > 0)
        rc = import_flush(&st);
    if (ncols < 0 && rc == STOCKD_OK) {
        fprintf(stderr, "stockctl: %s: empty file (no header)\n", path);
        return EXIT_USAGE;
    }
    import_summary(&st, path);
    if (read_error) {
        fprintf(stderr, "stockctl: error reading %s\n", path);
        return EXIT_USAGE;
    }
    if (rc != STOCKD_OK) {
        ctl_opts o = {.json = false};
        return ctl_report_failure(c, &o, rc);   /* to stderr: stdout has the summary */
    }
    return st.rejected + st.failed ? EXIT_SERVER : 0;
}
