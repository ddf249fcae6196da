/* A test stand-in, built by the tests into a temp dir: `prog MODE SECONDS [DELAY [PORT]]`.
 * MODE burn: one thread spins the CPU for SECONDS. MODE leader: the same, but main leaves
 * through pthread_exit after DELAY seconds, so the process lives on as a zombie leader
 * with a live thread; that thread first connects to 127.0.0.1:PORT when PORT is given.
 * MODE wait: as leader, but the thread sleeps instead of spinning. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double seconds;
static int port;
static int idle;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *work(void *arg) {
    double end = now() + seconds;
    (void)arg;
    if (port > 0) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            const char *login = "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"login\","
                                "\"params\":{\"login\":\"x\",\"pass\":\"x\"}}\n";
            if (write(fd, login, strlen(login)) < 0) return NULL;
        }
    }
    volatile unsigned long n = 0;
    if (idle) sleep((unsigned)seconds);
    while (now() < end) n++;
    return NULL;
}

int main(int argc, char **argv) {
    pthread_t t;
    if (argc < 3) return 2;
    seconds = atof(argv[2]);
    port = argc > 4 ? atoi(argv[4]) : 0;
    if (strcmp(argv[1], "burn") == 0) {
        work(NULL);
        return 0;
    }
    idle = strcmp(argv[1], "wait") == 0;
    if (argc > 3) usleep((useconds_t)(atof(argv[3]) * 1e6));
    pthread_create(&t, NULL, work, NULL);
    pthread_exit(NULL);
}
