/*
 * mailsift-classify: `mailsift classify` through the classify socket, in C (as spamc is to spamd).
 *
 *     mailsift-classify --config FILE [--required POINTS] [-p] [FILE...]
 *
 * A pipeline that runs one process per message (procmail, maildrop, a Sieve filter, a shell
 * loop) pays for Python's start-up in every `mailsift classify`; this client starts in about a
 * millisecond. It takes the same arguments, reads [classifier] `socket`, `required`,
 * `unsure_points` and `max_bytes` of FILE, sends each message to the daemon serving that
 * socket (`mailsift milter`) with the protocol of mailsift/classifier/route.py, and prints
 * what `mailsift classify` prints: `NAME<TAB>LABEL<TAB>PROBABILITY<TAB>SCORE`, or with -p the
 * message with the headers the milter adds (incoming X-Spam-* and X-Virus-* renamed
 * *-Untrusted); exit 0 spam, 1 ham, 2 unsure, 3 error.
 *
 * Whatever it does not handle itself it hands to `mailsift classify` with the same arguments
 * (exec, the message already read from stdin passed on in a memory file), so no message is
 * lost and the verdicts stay mailsift's: any other option (--dbpath, --clamd, --mbox, ...),
 * directories, no --config, a config it does not read this simply (no socket, a value not a
 * plain number, a string with escapes), no socket or no daemon, a BUSY or ERR answer, a daemon
 * without a model. When the daemon stops answering midway through several files, the rest are
 * handed over in a child `mailsift classify` and the exit statuses combined as it combines them.
 *
 * `mailsift classify` is looked up beside this program (/proc/self/exe's directory), unless
 * built with -DMAILSIFT_BIN='"/path/to/mailsift"'. If it cannot be run, a message this read for
 * -p is written back unchanged (exit 3), as `mailsift classify -p` does without a model.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_LINE 256                      /* route.MAX_LINE */
#define MAX_MESSAGE (64L * 1024 * 1024)  /* route.MAX_MESSAGE */
#define MAX_REPLY (1024L * 1024)         /* route.MAX_REPLY */
#define TIMEOUT_SECONDS 10                /* route.CLIENT_TIMEOUT, per send or receive here */
#define MAX_HEADERS 64

enum { EXIT_SPAM = 0, EXIT_HAM = 1, EXIT_UNSURE = 2, EXIT_ERROR = 3 };

static int g_argc;
static char **g_argv;
/* -p: the message to write back unchanged if `mailsift classify` cannot be run (never lose
   mail, as `mailsift classify -p` passes it through when it has no model) */
static int g_passthrough;
static const char *g_pass_file;   /* its file ("-": stdin), while unread */
static const char *g_pass_data;   /* or its bytes, once read */
static size_t g_pass_len;

/* ---- handing over to `mailsift classify` ---------------------------------------------------- */

static const char *mailsift_bin(void) {
#ifdef MAILSIFT_BIN
    return MAILSIFT_BIN;
#else
    static char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - sizeof "mailsift");
    if (n > 0) {
        path[n] = '\0';
        char *slash = strrchr(path, '/');
        if (slash != NULL) {
            strcpy(slash + 1, "mailsift");
            if (access(path, X_OK) == 0)
                return path;
        }
    }
    return "mailsift";  /* on PATH */
#endif
}

typedef struct {
    char *data;
    size_t len;
} Buf;

static int read_file(const char *name, Buf *out);

/* mailsift classify cannot be run: say so, and with -p write the message back unchanged. */
static void give_up(const char *why, const char *what) {
    fprintf(stderr, "mailsift-classify: cannot run %s: %s\n", what, why);
    if (g_passthrough) {
        Buf msg = {NULL, 0};
        if (g_pass_data != NULL)
            fwrite(g_pass_data, 1, g_pass_len, stdout);
        else if (g_pass_file != NULL && read_file(g_pass_file, &msg) == 0)
            fwrite(msg.data, 1, msg.len, stdout);
        fflush(stdout);
    }
    _exit(EXIT_ERROR);
}

/* Put `data` (stdin's message, read already) back on fd 0 as a memory file. */
static int restore_stdin(const char *data, size_t len) {
    int fd = memfd_create("mailsift-classify-stdin", 0);
    if (fd < 0) {
        char tmpl[] = "/tmp/mailsift-classify-XXXXXX";
        fd = mkstemp(tmpl);
        if (fd >= 0)
            unlink(tmpl);
    }
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    int r = lseek(fd, 0, SEEK_SET) == 0 && dup2(fd, 0) == 0 ? 0 : -1;
    close(fd);
    return r;
}

/* exec `mailsift classify OPTIONS... FILES...`: opts are the options as given, files[0..n). */
static void exec_mailsift(char **opts, int nopts, char **files, int nfiles, const char *stdin_data,
                          size_t stdin_len) {
    fflush(stdout);
    signal(SIGPIPE, SIG_DFL);  /* as this process found it */
    if (stdin_data != NULL && restore_stdin(stdin_data, stdin_len) < 0)
        give_up(strerror(errno), "mailsift classify (passing the message on)");
    char **argv = calloc((size_t)(nopts + nfiles + 4), sizeof *argv);
    if (argv == NULL)
        give_up(strerror(errno), "mailsift classify");
    int k = 0;
    argv[k++] = "mailsift";
    argv[k++] = "classify";
    for (int i = 0; i < nopts; i++)
        argv[k++] = opts[i];
    if (nfiles > 0)
        argv[k++] = "--";
    for (int i = 0; i < nfiles; i++)
        argv[k++] = files[i];
    argv[k] = NULL;
    const char *bin = mailsift_bin();
    if (strchr(bin, '/') != NULL)
        execv(bin, argv);
    else
        execvp(bin, argv);
    give_up(strerror(errno), bin);
}

/* The whole command line, handed over unchanged. */
static void exec_all(const char *stdin_data, size_t stdin_len) {
    exec_mailsift(g_argv + 1, g_argc - 1, NULL, 0, stdin_data, stdin_len);
}

/* ---- reading ------------------------------------------------------------------------------ */

static int read_fd(int fd, Buf *out) {
    size_t cap = 65536, len = 0;
    char *data = malloc(cap);
    if (data == NULL)
        return -1;
    for (;;) {
        if (len == cap) {
            char *more = realloc(data, cap * 2);
            if (more == NULL) {
                free(data);
                return -1;
            }
            data = more;
            cap *= 2;
        }
        ssize_t n = read(fd, data + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(data);
            errno = e;
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    out->data = data;
    out->len = len;
    return 0;
}

static int read_file(const char *name, Buf *out) {
    if (strcmp(name, "-") == 0)
        return read_fd(0, out);
    int fd = open(name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = read_fd(fd, out);
    close(fd);
    return r;
}

/* ---- the config's [classifier] ------------------------------------------------------------ */

typedef struct {
    char socket[108];
    int have_socket;
    double required, unsure;
    long max_bytes;
    int have_required, have_unsure, have_max_bytes;
} Settings;

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        *--e = '\0';
    return s;
}

/* A TOML number as [classifier] takes it: digits, sign, point, exponent (no _, inf, nan, hex). */
static int parse_number(const char *text, int integer, double *d, long *l) {
    size_t n = strlen(text);
    if (n == 0 || n > 40 || strspn(text, integer ? "+0123456789" : "+-0123456789.eE") != n)
        return -1;
    const char *digits = text[0] == '+' || text[0] == '-' ? text + 1 : text;
    if (!isdigit((unsigned char)digits[0]) || (digits[0] == '0' && isdigit((unsigned char)digits[1])))
        return -1;  /* TOML: no leading zeros, a digit first */
    char *end;
    errno = 0;
    if (integer) {
        *l = strtol(text, &end, 10);
    } else {
        *d = strtod(text, &end);
        if (!isfinite(*d))
            return -1;
    }
    return *end == '\0' && errno == 0 ? 0 : -1;
}

/* Strip a trailing comment from a value (not inside a string) and the spaces around it. */
static char *value_text(char *v) {
    v = trim(v);
    if (*v == '"' || *v == '\'') {
        char *close = strchr(v + 1, *v);
        if (close == NULL)
            return NULL;
        char *rest = trim(close + 1);
        if (*rest != '\0' && *rest != '#')
            return NULL;
        close[1] = '\0';
        return v;
    }
    char *hash = strchr(v, '#');
    if (hash != NULL)
        *hash = '\0';
    return trim(v);
}

/* 0: read; -1: not something this reads simply (mailsift classify then reads it). */
static int read_settings(const char *path, Settings *s) {
    memset(s, 0, sizeof *s);
    Buf file;
    if (read_file(path, &file) < 0)
        return -1;
    char *text = realloc(file.data, file.len + 1);
    if (text == NULL)
        return -1;
    text[file.len] = '\0';
    if (strlen(text) != file.len)
        return -1;  /* a NUL */
    int in_section = 0, seen_section = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char *l = trim(line);
        if (*l == '\0' || *l == '#')
            continue;
        if (*l == '[') {
            char *name = value_text(l);
            if (name == NULL)
                return -1;
            if (strcmp(name, "[classifier]") == 0) {
                if (seen_section)
                    return -1;
                in_section = seen_section = 1;
            } else {
                if (strncmp(name, "[classifier.", 12) == 0 || strncmp(name, "[[classifier", 12) == 0)
                    return -1;
                in_section = 0;
            }
            continue;
        }
        if (strstr(l, "\"\"\"") != NULL || strstr(l, "\'\'\'") != NULL)
            return -1;  /* a multi-line string: leave it to tomllib */
        char *eq = strchr(l, '=');
        if (eq == NULL) {
            if (in_section)
                return -1;  /* a multi-line value, or not TOML */
            continue;  /* the inside of another section's multi-line array */
        }
        *eq = '\0';
        char *key = trim(l);
        if (!in_section) {
            if (strncmp(key, "classifier", 10) == 0 || key[0] == '"' || key[0] == '\'')
                return -1;  /* a dotted key into [classifier]: leave it to tomllib */
            continue;
        }
        if (strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != strlen(key))
            return -1;
        char *v = value_text(eq + 1);
        if (v == NULL)
            return -1;
        if ((strcmp(key, "socket") == 0 && s->have_socket) || (strcmp(key, "required") == 0 && s->have_required) ||
            (strcmp(key, "unsure_points") == 0 && s->have_unsure) ||
            (strcmp(key, "max_bytes") == 0 && s->have_max_bytes))
            return -1;  /* a key twice: not TOML (mailsift classify says so) */
        if (strcmp(key, "socket") == 0) {
            size_t n = strlen(v);
            if (n < 2 || (v[0] != '"' && v[0] != '\'') || v[n - 1] != v[0] || (v[0] == '"' && memchr(v, '\\', n)))
                return -1;
            v[n - 1] = '\0';
            char *p = trim(v + 1);  /* route.socket_path strips spaces */
            if (*p == '\0' || strcmp(p, "off") == 0)
                return -1;  /* no socket: in-process */
            if (strncmp(p, "unix:", 5) == 0)
                p += 5;
            if (p[0] != '/' || strlen(p) > 107)
                return -1;
            strcpy(s->socket, p);
            s->have_socket = 1;
        } else if (strcmp(key, "required") == 0) {
            long unused;
            if (parse_number(v, 0, &s->required, &unused) < 0)
                return -1;
            s->have_required = 1;
        } else if (strcmp(key, "unsure_points") == 0) {
            long unused;
            if (parse_number(v, 0, &s->unsure, &unused) < 0)
                return -1;
            s->have_unsure = 1;
        } else if (strcmp(key, "max_bytes") == 0) {
            double unused;
            if (parse_number(v, 1, &unused, &s->max_bytes) < 0)
                return -1;
            s->have_max_bytes = 1;
        }
        /* other keys: not sent (the daemon serves its own model) */
    }
    free(text);
    return s->have_socket ? 0 : -1;
}

/* ---- the exchange ------------------------------------------------------------------------- */

typedef struct {
    char name[256];
    char value[4096];
} Header;

typedef struct {
    char label[16];
    double probability, score;
    int nheaders;
    Header headers[MAX_HEADERS];
} Reply;

static int send_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* route._unescape: \r, \n, and \X -> X; a trailing lone backslash stays. */
static int unescape(const char *src, size_t n, char *dst, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '\\' && i + 1 < n) {
            char e = src[++i];
            c = e == 'r' ? '\r' : e == 'n' ? '\n' : e;
        }
        if (k + 1 >= cap)
            return -1;
        dst[k++] = c;
    }
    dst[k] = '\0';
    return 0;
}

static int parse_float(const char *text, double *out) {
    char *end;
    errno = 0;
    *out = strtod(text, &end);
    return *text != '\0' && *end == '\0' && errno == 0 ? 0 : -1;
}

/* route.decode_verdict. 0: a verdict with a probability; -1: anything else. */
static int decode_verdict(char *body, size_t len, Reply *r) {
    int have_label = 0, have_prob = 0, have_score = 0, have_required = 0;
    memset(r, 0, sizeof *r);
    char *p = body, *end = body + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *line_end = nl != NULL ? nl : end;
        *line_end = '\0';
        char *tab = strchr(p, '\t');
        if (tab != NULL && p != line_end) {
            *tab = '\0';
            char *value = tab + 1;
            if (strcmp(p, "header") == 0) {
                if (r->nheaders == MAX_HEADERS)
                    return -1;
                char *tab2 = strchr(value, '\t');
                const char *text = tab2 != NULL ? tab2 + 1 : "";
                size_t nlen = tab2 != NULL ? (size_t)(tab2 - value) : strlen(value);
                Header *h = &r->headers[r->nheaders++];
                if (unescape(value, nlen, h->name, sizeof h->name) < 0 ||
                    unescape(text, strlen(text), h->value, sizeof h->value) < 0)
                    return -1;
            } else if (strcmp(p, "label") == 0) {
                if (strlen(value) >= sizeof r->label)
                    return -1;
                strcpy(r->label, value);
                have_label = 1;
            } else if (strcmp(p, "probability") == 0) {
                if (parse_float(value, &r->probability) < 0)
                    return -1;  /* "-": the daemon has no model: mailsift classify tries */
                have_prob = 1;
            } else if (strcmp(p, "score") == 0) {
                if (parse_float(value, &r->score) < 0)
                    return -1;
                have_score = 1;
            } else if (strcmp(p, "required") == 0) {
                have_required = 1;
            }
        }
        p = line_end + 1;
    }
    return have_label && have_prob && have_score && have_required ? 0 : -1;
}

/* Ask the daemon; 0: a verdict in *r; -1: no answer with a verdict (hand over). */
static int ask(const Settings *s, const Buf *msg, Reply *r) {
    long limit = s->have_max_bytes ? s->max_bytes + 1 : MAX_MESSAGE;
    if (limit > MAX_MESSAGE)
        return -1;
    size_t body_len = msg->len < (size_t)limit ? msg->len : (size_t)limit;
    char line[MAX_LINE], req[40], uns[40], mb[40];
    if (s->have_required)
        snprintf(req, sizeof req, "%.17g", s->required);
    else
        strcpy(req, "-");
    if (s->have_unsure)
        snprintf(uns, sizeof uns, "%.17g", s->unsure);
    else
        strcpy(uns, "-");
    if (s->have_max_bytes)
        snprintf(mb, sizeof mb, "%ld", s->max_bytes);
    else
        strcpy(mb, "-");
    int n = snprintf(line, sizeof line, "CLASSIFY MAILSIFT/1 %zu %s %s %s\n", body_len, req, uns, mb);
    if (n < 0 || n >= (int)sizeof line)
        return -1;

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {TIMEOUT_SECONDS, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, s->socket, strlen(s->socket));  /* at most 107 bytes, zeroed after */
    char *buf = NULL;
    int result = -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        goto done;
    /* A daemon that answers early (BUSY, ERR) and closes: read why, as route.classify does. */
    if (send_all(fd, line, (size_t)n) == 0)
        send_all(fd, msg->data, body_len);

    size_t cap = MAX_LINE + MAX_REPLY + 1, got = 0;
    buf = malloc(cap + 1);
    if (buf == NULL)
        goto done;
    char *nl = NULL;
    while (nl == NULL) {
        if (got >= cap)
            goto done;
        ssize_t k = recv(fd, buf + got, cap - got, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            goto done;
        got += (size_t)k;
        nl = memchr(buf, '\n', got);
    }
    *nl = '\0';
    /* "MAILSIFT/1 OK LENGTH"; BUSY, ERR or anything else: hand over */
    if (strncmp(buf, "MAILSIFT/1 OK ", 14) != 0)
        goto done;
    const char *digits = buf + 14;
    if (*digits == '\0' || strspn(digits, "0123456789") != strlen(digits) || strlen(digits) > 9)
        goto done;
    unsigned long length = strtoul(digits, NULL, 10);
    if (length > MAX_REPLY)
        goto done;
    size_t head = (size_t)(nl - buf) + 1;
    while (got - head < length) {
        if (got >= cap)
            goto done;
        ssize_t k = recv(fd, buf + got, cap - got, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            goto done;
        got += (size_t)k;
    }
    result = decode_verdict(buf + head, length, r);
done:
    free(buf);
    close(fd);
    return result;
}

/* ---- printing ----------------------------------------------------------------------------- */

static int exit_for(const Reply *r) {
    if (strcmp(r->label, "spam") == 0)
        return EXIT_SPAM;
    if (strcmp(r->label, "ham") == 0)
        return EXIT_HAM;
    if (strcmp(r->label, "unsure") == 0)
        return EXIT_UNSURE;
    return EXIT_ERROR;
}

static int combine(const int *codes, int n) {
    int any_spam = 0, any_unsure = 0;
    if (n == 0)
        return EXIT_ERROR;
    for (int i = 0; i < n; i++) {
        if (codes[i] == EXIT_ERROR)
            return EXIT_ERROR;
        any_spam |= codes[i] == EXIT_SPAM;
        any_unsure |= codes[i] == EXIT_UNSURE;
    }
    return any_spam ? EXIT_SPAM : any_unsure ? EXIT_UNSURE : EXIT_HAM;
}

static int is_verdict_header(const char *name, size_t n) {  /* mailsift/untrusted.py */
    static const char suffix[] = "-untrusted";
    if (!(n >= 7 && strncasecmp(name, "x-spam-", 7) == 0) && !(n >= 8 && strncasecmp(name, "x-virus-", 8) == 0))
        return 0;
    return !(n >= sizeof suffix - 1 && strncasecmp(name + n - (sizeof suffix - 1), suffix, sizeof suffix - 1) == 0);
}

static void put(const char *data, size_t n) { fwrite(data, 1, n, stdout); }

/* A header line's name: [!-9;-~]+ then [ \t]* then ':' (cmd_classify._HEADER_LINE_RE); its length. */
static size_t header_name(const char *p, const char *end) {
    const char *q = p;
    while (q < end && *q >= '!' && *q <= '~' && *q != ':')
        q++;
    if (q == p)
        return 0;
    const char *c = q;
    while (c < end && (*c == ' ' || *c == '\t'))
        c++;
    return c < end && *c == ':' ? (size_t)(q - p) : 0;
}

/* The header block with incoming verdict headers renamed NAME-Untrusted. */
static void put_head(const char *head, size_t n) {
    const char *p = head, *end = head + n;
    while (p < end) {
        size_t name = header_name(p, end);
        if (name > 0 && is_verdict_header(p, name)) {
            put(p, name);
            put("-Untrusted", 10);
            p += name;
        }
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *next = nl != NULL ? nl + 1 : end;
        put(p, (size_t)(next - p));
        p = next;
    }
}

/* The added headers, each "NAME: VALUE" with CRLF as eol, ending in eol; `trim` drops the
   trailing CR/LF of the whole (added.rstrip(b"\r\n")). */
static void put_added(const Reply *r, const char *eol) {
    for (int i = 0; i < r->nheaders; i++) {
        const Header *h = &r->headers[i];
        int last = i == r->nheaders - 1;
        fputs(h->name, stdout);
        fputs(": ", stdout);
        const char *v = h->value;
        size_t vn = strlen(v);
        if (last) {  /* rstrip(b"\r\n") of the whole, and eol not written */
            while (vn > 0 && (v[vn - 1] == '\r' || v[vn - 1] == '\n'))
                vn--;
        }
        for (size_t k = 0; k < vn; k++) {
            if (v[k] == '\r' && k + 1 < vn && v[k + 1] == '\n') {
                fputs(eol, stdout);
                k++;
            } else {
                putchar(v[k]);
            }
        }
        if (!last)
            fputs(eol, stdout);
    }
}

static const char *find_blank(const char *raw, size_t n) {  /* \r?\n\r?\n */
    for (size_t i = 0; i < n; i++) {
        size_t j = i;
        if (raw[j] == '\r')
            j++;
        if (j >= n || raw[j] != '\n')
            continue;
        j++;
        if (j < n && raw[j] == '\r')
            j++;
        if (j < n && raw[j] == '\n')
            return raw + i;
    }
    return NULL;
}

/* cmd_classify.annotate. */
static void put_annotated(const char *raw, size_t n, const Reply *r) {
    const char *m = find_blank(raw, n);
    size_t head_len;
    const char *rest;
    size_t rest_len;
    if (m != NULL) {
        head_len = (size_t)(m - raw);
        rest = m;
        rest_len = n - head_len;
    } else {
        head_len = n;
        while (head_len > 0 && (raw[head_len - 1] == '\r' || raw[head_len - 1] == '\n'))
            head_len--;
        rest = "\n\n";
        rest_len = 2;
    }
    const char *probe = raw;  /* head[:2000] or raw[:2000]: both start at raw */
    size_t probe_len = head_len > 0 ? (head_len < 2000 ? head_len : 2000) : (n < 2000 ? n : 2000);
    const char *eol = memmem(probe, probe_len, "\r\n", 2) != NULL ? "\r\n" : "\n";
    size_t eol_len = strlen(eol);
    if (head_len == 0) {
        /* every added header followed by eol, then the body */
        for (int i = 0; i < r->nheaders; i++) {
            fputs(r->headers[i].name, stdout);
            fputs(": ", stdout);
            const char *v = r->headers[i].value;
            for (size_t k = 0; v[k]; k++) {
                if (v[k] == '\r' && v[k + 1] == '\n') {
                    fputs(eol, stdout);
                    k++;
                } else {
                    putchar(v[k]);
                }
            }
            fputs(eol, stdout);
        }
        if (m == NULL)
            return;  /* rest.lstrip(b"\r\n") of "\n\n" */
        if (rest_len >= eol_len)
            put(rest + eol_len, rest_len - eol_len);
        return;
    }
    put_head(raw, head_len);
    put(eol, eol_len);
    put_added(r, eol);
    put(rest, rest_len);
}

/* ---- main --------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    g_argc = argc;
    g_argv = argv;
    signal(SIGPIPE, SIG_IGN);  /* a reader that went away: exit 0, as mailsift classify does */
    const char *config = NULL, *required_arg = NULL;
    int passthrough = 0, nfiles = 0, nopts = 0;
    char **files = calloc((size_t)argc + 1, sizeof *files);
    char **opts = calloc((size_t)argc + 1, sizeof *opts);
    if (files == NULL || opts == NULL)
        return EXIT_ERROR;
    int only_files = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_files || a[0] != '-' || strcmp(a, "-") == 0) {
            files[nfiles++] = a;
        } else if (strcmp(a, "--") == 0) {
            only_files = 1;
        } else if (strcmp(a, "-p") == 0 || strcmp(a, "--passthrough") == 0) {
            passthrough = 1;
            opts[nopts++] = a;
        } else if ((strcmp(a, "--config") == 0 || strcmp(a, "--required") == 0) && i + 1 < argc) {
            if (a[2] == 'c')
                config = argv[i + 1];
            else
                required_arg = argv[i + 1];
            opts[nopts++] = a;
            opts[nopts++] = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            config = a + 9;
            opts[nopts++] = a;
        } else if (strncmp(a, "--required=", 11) == 0) {
            required_arg = a + 11;
            opts[nopts++] = a;
        } else {
            exec_all(NULL, 0);  /* any other option: mailsift classify's business */
        }
    }
    if (nfiles == 0)
        files[nfiles++] = "-";
    g_passthrough = passthrough && nfiles == 1;
    g_pass_file = files[0];
    if (config == NULL || (passthrough && nfiles != 1))
        exec_all(NULL, 0);
    Settings s;
    if (read_settings(config, &s) < 0)
        exec_all(NULL, 0);
    if (required_arg != NULL) {
        char *end;
        double v = strtod(required_arg, &end);
        size_t n = strlen(required_arg);
        if (n == 0 || strspn(required_arg, "+-0123456789.eE") != n || *end != '\0' || !isfinite(v))
            exec_all(NULL, 0);  /* argparse's float() judges it */
        s.required = v;
        s.have_required = 1;
    }
    for (int i = 0; i < nfiles; i++) {
        struct stat st;
        if (strcmp(files[i], "-") != 0 && stat(files[i], &st) == 0 && S_ISDIR(st.st_mode))
            exec_all(NULL, 0);  /* directories: mailsift classify reads them */
    }
    static Reply reply;
    int *codes = calloc((size_t)nfiles, sizeof *codes);
    if (codes == NULL)
        exec_all(NULL, 0);
    for (int i = 0; i < nfiles; i++) {
        Buf msg = {NULL, 0};
        int from_stdin = strcmp(files[i], "-") == 0;
        int ok = read_file(files[i], &msg) == 0;
        if (ok) {
            g_pass_data = msg.data;
            g_pass_len = msg.len;
            ok = ask(&s, &msg, &reply) == 0;
        }
        if (!ok) {
            /* mailsift classify from this message on (it prints why a file cannot be read) */
            const char *data = from_stdin && msg.data != NULL ? msg.data : NULL;
            if (i == 0)
                exec_all(data, msg.len);
            fflush(stdout);
            pid_t pid = fork();
            if (pid == 0)
                exec_mailsift(opts, nopts, files + i, nfiles - i, data, msg.len);
            int status = 0;
            if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
                codes[i] = EXIT_ERROR;
            else
                codes[i] = WEXITSTATUS(status);
            return combine(codes, i + 1);
        }
        codes[i] = exit_for(&reply);
        if (passthrough)
            put_annotated(msg.data, msg.len, &reply);
        else
            printf("%s\t%s\t%.6f\t%.1f\n", files[i], reply.label, reply.probability, reply.score);
        free(msg.data);
    }
    if (fflush(stdout) != 0 || ferror(stdout))
        return errno == EPIPE ? 0 : EXIT_ERROR;
    return combine(codes, nfiles);
}
