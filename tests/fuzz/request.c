/* request.c: requests for the fuzz targets without a server, and their quiet logging.
 *
 * The targets that fuzz a handler's input (signed callbacks, the bank gateway's query)
 * need an mc_http_req_t, which only http.c builds, from an h2o request. This file
 * includes http.c itself so that its statics are in reach: the query string goes
 * through http.c's own parse_query and url_decode, and the accessors and replies are
 * the real ones. The wrapper has no h2o request and no server (a reply is dropped, as
 * for a client gone away) and two references, the handler's and the target's. Only
 * the fuzz targets build this file; the archive's http.o is then not linked. */
#include "../../common/http.c"

#include <fcntl.h>
#include <sanitizer/common_interface_defs.h>

#include "fuzz.h"

mc_http_req_t *fuzz_request_new(const char *query, size_t query_len, const char *const *headers,
                                size_t nheaders, const char *body, size_t body_len)
{
    mc_http_req_t *w = mc_new(mc_http_req_t);
    h2o_mem_init_pool(&w->pool);
    w->refs = 2;
    w->route_label = "route=\"fuzz\"";
    w->method = "GET";
    w->path = "/fuzz";
    w->params = h2o_mem_alloc_pool(&w->pool, sizeof(pair_t));
    parse_query(w, query, query_len);
    w->headers = h2o_mem_alloc_pool(&w->pool, (nheaders ? nheaders : 1) * sizeof(pair_t));
    for (size_t i = 0; i < nheaders; i++) {
        const char *name = headers[2 * i], *value = headers[2 * i + 1];
        w->headers[i].name = pool_strndup(&w->pool, name, strlen(name));
        w->headers[i].value = pool_strndup(&w->pool, value, strlen(value));
    }
    w->nheaders = nheaders;
    w->body = pool_strndup(&w->pool, body ? body : "", body ? body_len : 0);
    w->body_len = body ? body_len : 0;
    return w;
}

int fuzz_request_query_at(const mc_http_req_t *req, size_t i, const char **name, const char **value)
{
    if (i >= req->nquery)
        return 0;
    *name = req->query[i].name;
    *value = req->query[i].value;
    return 1;
}

int fuzz_request_replied(const mc_http_req_t *req)
{
    return req->replied;
}

void fuzz_request_free(mc_http_req_t **req)
{
    if (!*req)
        return;
    if (!(*req)->replied)
        req_release(*req); /* the handler's reference */
    req_release(*req);
    *req = NULL;
}

/* ---------------------------------------------------------------- stderr */

static int real_stderr = -1, dev_null = -1;

void fuzz_stderr_to(int fd)
{
    if (real_stderr < 0) {
        real_stderr = dup(STDERR_FILENO);
        dev_null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (real_stderr < 0 || dev_null < 0)
            abort();
        __sanitizer_set_report_fd((void *)(intptr_t)real_stderr);
    }
    dup2(fd >= 0 ? fd : dev_null, STDERR_FILENO);
}

void fuzz_stderr_back(void)
{
    if (real_stderr >= 0)
        dup2(real_stderr, STDERR_FILENO);
}

char *fuzz_field(const uint8_t **data, size_t *size, char sep, size_t *len)
{
    const uint8_t *end = memchr(*data, sep, *size);
    size_t n = end ? (size_t)(end - *data) : *size;
    char *out = mc_strndup((const char *)*data, n);
    *data += end ? n + 1 : n;
    *size -= end ? n + 1 : n;
    if (len)
        *len = n;
    return out;
}
