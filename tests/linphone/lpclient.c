/*
 * lpclient: a real Linphone SDK 5.1 client driven by a line protocol, for interop tests.
 *
 * Usage: lpclient <work-dir> [section.key=value ...]
 *   The work dir receives the private config (lpclient.rc), the SDK's databases and sdk.log.
 *   Each section.key=value is written into the config before the core starts (ports, ipv6 and
 *   similar settings are only read at start).
 *
 * Input (stdin): one command per line, tokens separated by blanks; inside a token %XX is
 * decoded, so a token may carry a blank as %20 and a percent sign as %25.
 * Output (stdout): one JSON object per line, always with an "event" member. Every command is
 * answered by {"event":"ok"|"error","seq":N,"cmd":...}, N counting non-empty lines from 1;
 * events it causes synchronously are printed before that answer. See COMMANDS below.
 *
 * Events:
 *   ready {version, udp_port, tcp_port, pid}          once the core runs
 *   ok|error {seq, cmd[, message]}                    the answer to each command
 *   registration {state: Progress|Ok|Cleared|Failed, message, identity}
 *   subscription {state: Active|Terminated|Error|...} the list SUBSCRIBE's dialog
 *   presence_received {friends: [{name, entries: [{key, basic, contact, activity}]}]}
 *   presence {friend, entry: {key, basic, contact, activity}}   answer to `presence`
 *   friends {friends: [...]}                          answer to `friends`
 *   usage {cmd, args}                                 answer to `help`
 *   log {level: warning|error|fatal, domain, message} SDK warnings (full log in sdk.log)
 *   creator {op, status, response, username, phone, ha1, algorithm}
 *                                                     an account creator (XML-RPC) request ended:
 *                                                     status is the LinphoneAccountCreatorStatus
 *                                                     name without its prefix; the fields are
 *                                                     the creator's after the SDK read the answer
 *   configuring {status: Successful|Failed|Skipped, message}
 *                                                     remote provisioning ([misc] config-uri) ended
 *   config {section, key, value}                      answer to `config_get` (value null if unset)
 *   global_state {state}                              the core's state (Startup, Configuring, On...)
 *   stopped                                           after quit
 *   basic is open, closed, or none when the SDK holds no presence model for the key.
 *
 * The core is iterated continuously between commands, so SIP traffic is served at any time.
 * The SDK's own console output is diverted to stderr: stdout carries only the protocol.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linphone/account_creator.h>
#include <linphone/core.h>
#include <linphone/friendlist.h>
#include <linphone/logging.h>

/* Exported by liblinphone 5.1 but declared in no installed header (FlexiAPI backend). */
LinphoneAccountCreatorStatus linphone_account_creator_delete_account_flexiapi(LinphoneAccountCreator *creator);
void linphone_account_creator_cbs_set_delete_account(LinphoneAccountCreatorCbs *cbs, LinphoneAccountCreatorCbsStatusCb cb);

#define MAX_ARGS 64
#define MAX_FRIENDS 4096
#define LINE_MAX_LEN 65536

/* ---------------------------------------------------------------- JSON output */

typedef struct {
	char *buf;
	size_t len, cap;
} Sb;

static void sb_reserve(Sb *sb, size_t more) {
	if (sb->len + more + 1 <= sb->cap) return;
	size_t cap = sb->cap ? sb->cap : 256;
	while (cap < sb->len + more + 1) cap *= 2;
	char *p = realloc(sb->buf, cap);
	if (!p) abort();
	sb->buf = p;
	sb->cap = cap;
}

static void sb_putn(Sb *sb, const char *s, size_t n) {
	sb_reserve(sb, n);
	memcpy(sb->buf + sb->len, s, n);
	sb->len += n;
	sb->buf[sb->len] = '\0';
}

static void sb_puts(Sb *sb, const char *s) { sb_putn(sb, s, strlen(s)); }

static void sb_printf(Sb *sb, const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) return;
	sb_reserve(sb, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sb->len += (size_t)n;
}

static void sb_free(Sb *sb) {
	free(sb->buf);
	sb->buf = NULL;
	sb->len = sb->cap = 0;
}

static void sb_json_str(Sb *sb, const char *s) {
	if (!s) {
		sb_puts(sb, "null");
		return;
	}
	sb_putn(sb, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': sb_puts(sb, "\\\""); break;
		case '\\': sb_puts(sb, "\\\\"); break;
		case '\n': sb_puts(sb, "\\n"); break;
		case '\r': sb_puts(sb, "\\r"); break;
		case '\t': sb_puts(sb, "\\t"); break;
		default:
			if (*p < 0x20) sb_printf(sb, "\\u%04x", *p);
			else sb_putn(sb, (const char *)p, 1);
		}
	}
	sb_putn(sb, "\"", 1);
}

/* Members are appended as ,"key":value so every event starts with its "event" member. */
static void ev_begin(Sb *sb, const char *event) {
	sb->len = 0;
	sb_puts(sb, "{\"event\":");
	sb_json_str(sb, event);
}

static void ev_str(Sb *sb, const char *key, const char *value) {
	sb_putn(sb, ",", 1);
	sb_json_str(sb, key);
	sb_putn(sb, ":", 1);
	sb_json_str(sb, value);
}

static void ev_int(Sb *sb, const char *key, long value) {
	sb_putn(sb, ",", 1);
	sb_json_str(sb, key);
	sb_printf(sb, ":%ld", value);
}

/* The SDK may log from helper threads, and logs become events: serialise every write. */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *events_out;

static void ev_emit(Sb *sb) {
	pthread_mutex_lock(&out_lock);
	fwrite(sb->buf, 1, sb->len, events_out);
	fputs("}\n", events_out);
	fflush(events_out);
	pthread_mutex_unlock(&out_lock);
}

/* ---------------------------------------------------------------- client state */

typedef struct {
	char *name;
	LinphoneFriend *lf;
} FriendEntry;

typedef struct Client {
	LinphoneFactory *factory;
	LinphoneCore *lc;
	LinphoneAccount *account;
	LinphoneFriendList *list;
	LinphoneAccountCreator *creator;
	char *new_password; /* the creator's user data: update_account's new password */
	FriendEntry friends[MAX_FRIENDS];
	int nfriends;
	int quit;
	char work_dir[4096];
} Client;

static Client client;
static FILE *sdk_log;

static long now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Enum names from the SDK carry a long prefix ("LinphoneRegistrationOk"): keep the tail. */
static const char *strip_prefix(const char *s, const char *prefix) {
	if (!s) return "unknown";
	size_t n = strlen(prefix);
	return strncmp(s, prefix, n) == 0 ? s + n : s;
}

static const char *basic_name(const LinphonePresenceModel *model) {
	if (!model) return "none";
	return linphone_presence_model_get_basic_status(model) == LinphonePresenceBasicStatusOpen ? "open"
																								: "closed";
}

/* One key of a friend (a phone number as given, or a SIP URI) as a JSON object. */
static void sb_presence_entry(Sb *sb, LinphoneFriend *lf, const char *key) {
	const LinphonePresenceModel *model = linphone_friend_get_presence_model_for_uri_or_tel(lf, key);
	char *contact = model ? linphone_presence_model_get_contact(model) : NULL;
	LinphonePresenceActivity *activity = model ? linphone_presence_model_get_activity(model) : NULL;
	char *activity_str = activity ? linphone_presence_activity_to_string(activity) : NULL;
	sb_puts(sb, "{\"key\":");
	sb_json_str(sb, key);
	sb_puts(sb, ",\"basic\":");
	sb_json_str(sb, basic_name(model));
	sb_puts(sb, ",\"contact\":");
	sb_json_str(sb, contact);
	sb_puts(sb, ",\"activity\":");
	sb_json_str(sb, activity_str);
	sb_puts(sb, "}");
	if (contact) bctbx_free(contact);
	if (activity_str) bctbx_free(activity_str);
}

static const char *friend_display_name(LinphoneFriend *lf) {
	const char *name = linphone_friend_get_name(lf);
	return name ? name : "";
}

/* Every key of the friend: phone numbers first, then SIP addresses. */
static void sb_friend_entries(Sb *sb, LinphoneFriend *lf) {
	int first = 1;
	sb_puts(sb, "[");
	bctbx_list_t *numbers = linphone_friend_get_phone_numbers(lf);
	for (bctbx_list_t *it = numbers; it; it = bctbx_list_next(it)) {
		if (!first) sb_puts(sb, ",");
		first = 0;
		sb_presence_entry(sb, lf, (const char *)bctbx_list_get_data(it));
	}
	bctbx_list_free(numbers);
	for (const bctbx_list_t *it = linphone_friend_get_addresses(lf); it; it = bctbx_list_next(it)) {
		char *uri = linphone_address_as_string_uri_only((const LinphoneAddress *)bctbx_list_get_data(it));
		if (!first) sb_puts(sb, ",");
		first = 0;
		sb_presence_entry(sb, lf, uri);
		bctbx_free(uri);
	}
	sb_puts(sb, "]");
}

static void adopt_default_account(Client *c);

/* ---------------------------------------------------------------- SDK callbacks */

static void on_registration(LinphoneCore *lc, LinphoneAccount *account, LinphoneRegistrationState state,
							const char *message) {
	(void)lc;
	Sb sb = {0};
	const LinphoneAccountParams *params = linphone_account_get_params(account);
	const LinphoneAddress *identity = params ? linphone_account_params_get_identity_address(params) : NULL;
	char *identity_str = identity ? linphone_address_as_string_uri_only(identity) : NULL;
	ev_begin(&sb, "registration");
	ev_str(&sb, "state", strip_prefix(linphone_registration_state_to_string(state), "LinphoneRegistration"));
	ev_str(&sb, "message", message);
	ev_str(&sb, "identity", identity_str);
	ev_emit(&sb);
	if (identity_str) bctbx_free(identity_str);
	sb_free(&sb);
}

static void on_configuring(LinphoneCore *lc, LinphoneConfiguringState status, const char *message) {
	(void)lc;
	Sb sb = {0};
	ev_begin(&sb, "configuring");
	ev_str(&sb, "status", strip_prefix(linphone_configuring_state_to_string(status), "LinphoneConfiguring"));
	ev_str(&sb, "message", message);
	ev_emit(&sb);
	sb_free(&sb);
}

static void on_global_state(LinphoneCore *lc, LinphoneGlobalState state, const char *message) {
	(void)lc;
	(void)message;
	Sb sb = {0};
	ev_begin(&sb, "global_state");
	ev_str(&sb, "state", strip_prefix(linphone_global_state_to_string(state), "LinphoneGlobal"));
	ev_emit(&sb);
	sb_free(&sb);
}

static void on_presence_received(LinphoneFriendList *list, const bctbx_list_t *friends) {
	(void)list;
	Sb sb = {0};
	ev_begin(&sb, "presence_received");
	sb_puts(&sb, ",\"friends\":[");
	for (const bctbx_list_t *it = friends; it; it = bctbx_list_next(it)) {
		LinphoneFriend *lf = (LinphoneFriend *)bctbx_list_get_data(it);
		if (it != friends) sb_puts(&sb, ",");
		sb_puts(&sb, "{\"name\":");
		sb_json_str(&sb, friend_display_name(lf));
		sb_puts(&sb, ",\"entries\":");
		sb_friend_entries(&sb, lf);
		sb_puts(&sb, "}");
	}
	sb_puts(&sb, "]");
	ev_emit(&sb);
	sb_free(&sb);
}

/*
 * The list SUBSCRIBE is an "internal" event: the SDK hides its state changes from application
 * callbacks and 5.1 offers no getter for it. Its friendlist.c logs each change, so the state is
 * read from that log line.
 */
static const char LIST_STATE_LOG[] = "Receiving new state [";
static const char LIST_STATE_TAIL[] = "for friend list";

static void on_log(LinphoneLoggingService *service, const char *domain, LinphoneLogLevel level,
				   const char *message) {
	(void)service;
	const char *level_name = level == LinphoneLogLevelDebug     ? "debug"
							 : level == LinphoneLogLevelTrace   ? "trace"
							 : level == LinphoneLogLevelMessage ? "message"
							 : level == LinphoneLogLevelWarning ? "warning"
							 : level == LinphoneLogLevelError   ? "error"
																: "fatal";
	if (sdk_log) {
		pthread_mutex_lock(&out_lock);
		fprintf(sdk_log, "%ld %s [%s] %s\n", now_ms(), level_name, domain ? domain : "", message);
		fflush(sdk_log);
		pthread_mutex_unlock(&out_lock);
	}
	if (!message) return;
	Sb sb = {0};
	if (strncmp(message, LIST_STATE_LOG, sizeof(LIST_STATE_LOG) - 1) == 0 && strstr(message, LIST_STATE_TAIL)) {
		const char *start = message + sizeof(LIST_STATE_LOG) - 1;
		const char *end = strchr(start, ']');
		if (end) {
			char state[64];
			size_t n = (size_t)(end - start) < sizeof(state) - 1 ? (size_t)(end - start) : sizeof(state) - 1;
			memcpy(state, start, n);
			state[n] = '\0';
			ev_begin(&sb, "subscription");
			ev_str(&sb, "state", strip_prefix(state, "LinphoneSubscription"));
			ev_emit(&sb);
		}
	} else if (level & (LinphoneLogLevelWarning | LinphoneLogLevelError | LinphoneLogLevelFatal)) {
		ev_begin(&sb, "log");
		ev_str(&sb, "level", level_name);
		ev_str(&sb, "domain", domain);
		ev_str(&sb, "message", message);
		ev_emit(&sb);
	}
	sb_free(&sb);
}

/* ---------------------------------------------------------------- commands */

typedef int (*CommandFn)(Client *c, int argc, char **argv, Sb *err);

typedef struct {
	const char *name;
	int min_args;
	CommandFn fn;
	const char *usage;
} Command;

static int fail(Sb *err, const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	char buf[1024];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	sb_puts(err, buf);
	return -1;
}

static int is_none(const char *s) { return !s || !*s || strcmp(s, "-") == 0; }

/* A key=value option; returns the value when the token names `key`. */
static const char *option(const char *token, const char *key) {
	size_t n = strlen(key);
	return strncmp(token, key, n) == 0 && token[n] == '=' ? token + n + 1 : NULL;
}

static int cmd_account(Client *c, int argc, char **argv, Sb *err) {
	if (c->account) return fail(err, "only one account is supported");
	const char *identity_str = argv[0], *password = argv[1], *proxy = argv[2];
	int do_register = atoi(argv[3]);
	const char *prefix = NULL, *userid = NULL, *realm = NULL;
	int expires = 3600, outbound = 1;
	for (int i = 4; i < argc; i++) {
		const char *v;
		if ((v = option(argv[i], "expires"))) expires = atoi(v);
		else if ((v = option(argv[i], "userid"))) userid = v;
		else if ((v = option(argv[i], "realm"))) realm = v;
		else if ((v = option(argv[i], "outbound"))) outbound = atoi(v);
		else if ((v = option(argv[i], "prefix"))) prefix = v;
		else if (i == 4 && !strchr(argv[i], '=')) prefix = argv[i];
		else return fail(err, "unknown account option %s", argv[i]);
	}
	LinphoneAddress *identity = linphone_factory_create_address(c->factory, identity_str);
	if (!identity) return fail(err, "invalid identity %s", identity_str);
	LinphoneAccountParams *params = linphone_core_create_account_params(c->lc);
	linphone_account_params_set_identity_address(params, identity);
	if (linphone_account_params_set_server_addr(params, proxy) != 0) {
		linphone_account_params_unref(params);
		linphone_address_unref(identity);
		return fail(err, "invalid proxy %s", proxy);
	}
	/* Route everything through the proxy: the RLS URI's domain (example.org) must not be
	   resolved through DNS. This is also what the captured SUBSCRIBEs show (a Route header). */
	linphone_account_params_enable_outbound_proxy(params, outbound ? TRUE : FALSE);
	linphone_account_params_enable_register(params, do_register ? TRUE : FALSE);
	linphone_account_params_set_expires(params, expires);
	linphone_account_params_enable_publish(params, FALSE);
	if (!is_none(prefix)) linphone_account_params_set_international_prefix(params, prefix);
	if (!is_none(password)) {
		LinphoneAuthInfo *auth = linphone_factory_create_auth_info(
			c->factory, linphone_address_get_username(identity), is_none(userid) ? NULL : userid, password,
			NULL, is_none(realm) ? NULL : realm, linphone_address_get_domain(identity));
		linphone_core_add_auth_info(c->lc, auth);
		linphone_auth_info_unref(auth);
	}
	c->account = linphone_core_create_account(c->lc, params);
	linphone_account_params_unref(params);
	linphone_address_unref(identity);
	if (!c->account) return fail(err, "account rejected by the SDK");
	linphone_core_add_account(c->lc, c->account);
	/* Phone numbers take the default account's domain and international prefix. */
	linphone_core_set_default_account(c->lc, c->account);
	return 0;
}

static int has_scheme(const char *s) {
	return strncmp(s, "sip:", 4) == 0 || strncmp(s, "sips:", 5) == 0;
}

static int cmd_friend(Client *c, int argc, char **argv, Sb *err) {
	if (c->nfriends >= MAX_FRIENDS) return fail(err, "too many friends");
	LinphoneFriend *lf = linphone_core_create_friend(c->lc);
	/* With vCard support, addresses and numbers are dropped until the friend has a vCard;
	   setting the name creates it. */
	linphone_friend_set_name(lf, argv[0]);
	for (int i = 1; i < argc; i++) {
		if (has_scheme(argv[i])) {
			LinphoneAddress *addr = linphone_factory_create_address(c->factory, argv[i]);
			if (!addr) {
				linphone_friend_unref(lf);
				return fail(err, "invalid SIP URI %s", argv[i]);
			}
			linphone_friend_add_address(lf, addr);
			linphone_address_unref(addr);
		} else {
			linphone_friend_add_phone_number(lf, argv[i]);
		}
	}
	/* Friends wait for `subscribe`: added to a list without an RLS URI, the SDK would
	   SUBSCRIBE to each SIP address on its own. */
	if (c->list) {
		if (linphone_friend_list_add_friend(c->list, lf) != LinphoneFriendListOK) {
			linphone_friend_unref(lf);
			return fail(err, "the SDK refused friend %s", argv[0]);
		}
		linphone_friend_list_update_subscriptions(c->list);
	}
	c->friends[c->nfriends].name = strdup(argv[0]);
	c->friends[c->nfriends].lf = lf;
	c->nfriends++;
	return 0;
}

static int cmd_subscribe(Client *c, int argc, char **argv, Sb *err) {
	(void)argc;
	if (!c->account) adopt_default_account(c); /* a provisioned one */
	if (!c->account) return fail(err, "declare the account first: numbers need its domain and prefix");
	/* "-": the list has no RLS URI of its own and the SDK uses [sip] rls_uri (provisioned). */
	const char *rls = is_none(argv[0]) ? NULL : argv[0];
	if (c->list) {
		/* After unsubscribe: enabling again re-runs the SDK's own update logic. */
		if (rls) linphone_friend_list_set_rls_uri(c->list, rls);
		linphone_friend_list_enable_subscriptions(c->list, TRUE);
		linphone_friend_list_update_subscriptions(c->list);
		return 0;
	}
	c->list = linphone_core_create_friend_list(c->lc);
	linphone_friend_list_set_display_name(c->list, "lpclient");
	if (rls) {
		linphone_friend_list_set_rls_uri(c->list, rls);
		if (!linphone_friend_list_get_rls_address(c->list)) return fail(err, "invalid RLS URI %s", rls);
	}
	LinphoneFriendListCbs *cbs = linphone_factory_create_friend_list_cbs(c->factory);
	linphone_friend_list_cbs_set_presence_received(cbs, on_presence_received);
	linphone_friend_list_add_callbacks(c->list, cbs);
	linphone_friend_list_cbs_unref(cbs);
	linphone_core_add_friend_list(c->lc, c->list);
	for (int i = 0; i < c->nfriends; i++) {
		if (linphone_friend_list_add_friend(c->list, c->friends[i].lf) != LinphoneFriendListOK)
			return fail(err, "the SDK refused friend %s", c->friends[i].name);
	}
	linphone_friend_list_enable_subscriptions(c->list, TRUE);
	/* A new list inherits "enabled" from the core, so the call above may be a no-op. */
	linphone_friend_list_update_subscriptions(c->list);
	return 0;
}

static int cmd_unsubscribe(Client *c, int argc, char **argv, Sb *err) {
	(void)argc;
	(void)argv;
	if (!c->list) return fail(err, "not subscribed");
	linphone_friend_list_enable_subscriptions(c->list, FALSE);
	return 0;
}

static int cmd_presence(Client *c, int argc, char **argv, Sb *err) {
	(void)argc;
	(void)err;
	Sb sb = {0};
	LinphoneFriend *found = NULL;
	for (int i = 0; i < c->nfriends && !found; i++) {
		if (linphone_friend_get_presence_model_for_uri_or_tel(c->friends[i].lf, argv[0])) found = c->friends[i].lf;
	}
	ev_begin(&sb, "presence");
	ev_str(&sb, "friend", found ? friend_display_name(found) : NULL);
	sb_puts(&sb, ",\"entry\":");
	if (found) {
		sb_presence_entry(&sb, found, argv[0]);
	} else {
		sb_puts(&sb, "{\"key\":");
		sb_json_str(&sb, argv[0]);
		sb_puts(&sb, ",\"basic\":\"none\",\"contact\":null,\"activity\":null}");
	}
	ev_emit(&sb);
	sb_free(&sb);
	return 0;
}

static int cmd_friends(Client *c, int argc, char **argv, Sb *err) {
	(void)argc;
	(void)argv;
	(void)err;
	Sb sb = {0};
	ev_begin(&sb, "friends");
	sb_puts(&sb, ",\"friends\":[");
	for (int i = 0; i < c->nfriends; i++) {
		if (i) sb_puts(&sb, ",");
		sb_puts(&sb, "{\"name\":");
		sb_json_str(&sb, c->friends[i].name);
		sb_puts(&sb, ",\"entries\":");
		sb_friend_entries(&sb, c->friends[i].lf);
		sb_puts(&sb, "}");
	}
	sb_puts(&sb, "]");
	ev_emit(&sb);
	sb_free(&sb);
	return 0;
}

static int cmd_user_agent(Client *c, int argc, char **argv, Sb *err) {
	(void)err;
	linphone_core_set_user_agent(c->lc, argv[0], argc > 1 ? argv[1] : NULL);
	return 0;
}

static int cmd_config(Client *c, int argc, char **argv, Sb *err) {
	(void)argc;
	(void)err;
	LinphoneConfig *cfg = linphone_core_get_config(c->lc);
	if (strcmp(argv[2], "-") == 0) linphone_config_clean_entry(cfg, argv[0], argv[1]);
	else linphone_config_set_string(cfg, argv[0], argv[1], argv[2]);
	return 0;
}

static int cmd_refresh_register(Client *c, int argc, char **argv, Sb *err) {
	(void)argc;
	(void)argv;
	(void)err;
	linphone_core_refresh_registers(c->lc);
	return 0;
}

static int cmd_network(Client *c, int argc, char **argv, Sb *err) {
	(void)argc;
	(void)err;
	linphone_core_set_network_reachable(c->lc, atoi(argv[0]) ? TRUE : FALSE);
	return 0;
}

static void iterate_for(Client *c, long ms) {
	long deadline = now_ms() + ms;
	do {
		linphone_core_iterate(c->lc);
		usleep(5000);
	} while (now_ms() < deadline);
}

static int cmd_iterate(Client *c, int argc, char **argv, Sb *err) {
	(void)argc;
	long ms = atol(argv[0]);
	if (ms < 0 || ms > 600000) return fail(err, "iterate: 0..600000 ms");
	iterate_for(c, ms);
	return 0;
}

/* The settings a headless core needs again after each start: no NAT helpers, the list
   subscriptions enabled, the network up. */
static void core_started(Client *c) {
	LinphoneNatPolicy *nat = linphone_core_create_nat_policy(c->lc);
	linphone_nat_policy_enable_stun(nat, FALSE);
	linphone_nat_policy_enable_ice(nat, FALSE);
	linphone_nat_policy_enable_turn(nat, FALSE);
	linphone_nat_policy_enable_upnp(nat, FALSE);
	linphone_core_set_nat_policy(c->lc, nat);
	linphone_nat_policy_unref(nat);
	linphone_core_enable_friend_list_subscription(c->lc, TRUE);
	linphone_core_set_network_reachable(c->lc, TRUE);
}

/* The core's default account (provisioned, or made by the account creator) becomes ours. */
static void adopt_default_account(Client *c) {
	LinphoneAccount *account = linphone_core_get_default_account(c->lc);
	if (c->account) linphone_account_unref(c->account);
	c->account = account ? linphone_account_ref(account) : NULL;
}

static int cmd_restart(Client *c, int argc, char **argv, Sb *err) {
	(void)argc;
	(void)argv;
	/* As an app does after setting a provisioning URI: stop, then start (which fetches it
	   again and re-reads settings such as the account creator backend). */
	if (c->list) return fail(err, "restart before subscribing (the friend list would be stale)");
	linphone_core_stop(c->lc);
	if (linphone_core_start(c->lc) != 0) return fail(err, "the core did not start again");
	core_started(c);
	adopt_default_account(c);
	return 0;
}

static int cmd_config_get(Client *c, int argc, char **argv, Sb *err) {
	(void)argc;
	(void)err;
	Sb sb = {0};
	const char *value = linphone_config_get_string(linphone_core_get_config(c->lc), argv[0], argv[1], NULL);
	ev_begin(&sb, "config");
	ev_str(&sb, "section", argv[0]);
	ev_str(&sb, "key", argv[1]);
	ev_str(&sb, "value", value);
	ev_emit(&sb);
	sb_free(&sb);
	return 0;
}

/* Replace every auth info by one: a clear password, or an HA1 with its algorithm. */
static int cmd_auth(Client *c, int argc, char **argv, Sb *err) {
	(void)argc;
	const char *password = is_none(argv[1]) ? NULL : argv[1], *ha1 = is_none(argv[2]) ? NULL : argv[2];
	const char *algorithm = is_none(argv[3]) ? NULL : argv[3];
	if (!password == !ha1) return fail(err, "give a password or an ha1");
	linphone_core_clear_all_auth_info(c->lc);
	/* An HA1 holds its realm (the domain here): the SDK matches it to SIP challenges by it. */
	LinphoneAuthInfo *auth = linphone_factory_create_auth_info_2(c->factory, argv[0], NULL, password, ha1,
																  ha1 ? argv[4] : NULL, argv[4], algorithm);
	linphone_core_add_auth_info(c->lc, auth);
	linphone_auth_info_unref(auth);
	return 0;
}

static int change_account(Client *c, Sb *err, int do_register, const char *prefix) {
	if (!c->account) adopt_default_account(c);
	if (!c->account) return fail(err, "no account");
	LinphoneAccountParams *params = linphone_account_params_clone(linphone_account_get_params(c->account));
	if (do_register >= 0) linphone_account_params_enable_register(params, do_register ? TRUE : FALSE);
	if (prefix) linphone_account_params_set_international_prefix(params, prefix);
	linphone_account_set_params(c->account, params);
	linphone_account_params_unref(params);
	return 0;
}

static int cmd_account_register(Client *c, int argc, char **argv, Sb *err) {
	(void)argc;
	return change_account(c, err, atoi(argv[0]) ? 1 : 0, NULL);
}

static int cmd_account_prefix(Client *c, int argc, char **argv, Sb *err) {
	(void)argc;
	return change_account(c, err, -1, argv[0]);
}

static int cmd_quit(Client *c, int argc, char **argv, Sb *err) {
	if (argc > 0 && strcmp(argv[0], "now") != 0) return fail(err, "usage: quit [now]");
	/* A clean stop un-REGISTERs and waits up to 2 s for the answer; a peer that is already
	   gone makes every test pay that, so "now" drops the network first and sends nothing. */
	if (argc > 0) linphone_core_set_network_reachable(c->lc, FALSE);
	c->quit = 1;
	return 0;
}

/* ---------------------------------------------------------------- account creator (XML-RPC) */

/* Names of LinphoneAccountCreatorStatus (types.h of 5.1), which has no to_string function. */
static const char *const CREATOR_STATUS[] = {
	"RequestOk",           "RequestFailed",      "MissingArguments",        "MissingCallbacks",
	"AccountCreated",      "AccountNotCreated",  "AccountExist",            "AccountExistWithAlias",
	"AccountNotExist",     "AliasIsAccount",     "AliasExist",              "AliasNotExist",
	"AccountActivated",    "AccountAlreadyActivated", "AccountNotActivated", "AccountLinked",
	"AccountNotLinked",    "ServerError",        "PhoneNumberInvalid",      "WrongActivationCode",
	"PhoneNumberOverused", "AlgoNotSupported",   "UnexpectedError",
};

static const char *creator_status_name(LinphoneAccountCreatorStatus status) {
	size_t n = sizeof(CREATOR_STATUS) / sizeof(CREATOR_STATUS[0]);
	return (size_t)status < n ? CREATOR_STATUS[status] : "Unknown";
}

static void emit_creator(const char *op, LinphoneAccountCreator *creator, LinphoneAccountCreatorStatus status,
						 const char *response) {
	Sb sb = {0};
	ev_begin(&sb, "creator");
	ev_str(&sb, "op", op);
	ev_str(&sb, "status", creator_status_name(status));
	ev_str(&sb, "response", response);
	ev_str(&sb, "username", linphone_account_creator_get_username(creator));
	ev_str(&sb, "phone", linphone_account_creator_get_phone_number(creator));
	ev_str(&sb, "ha1", linphone_account_creator_get_ha1(creator));
	ev_str(&sb, "algorithm", linphone_account_creator_get_algorithm(creator));
	ev_emit(&sb);
	sb_free(&sb);
}

/* The status callback does not say which request ended: one small callback per request. */
#define CREATOR_CB(op)                                                                                   \
	static void on_creator_##op(LinphoneAccountCreator *creator, LinphoneAccountCreatorStatus status,   \
								const char *response) {                                                 \
		emit_creator(#op, creator, status, response);                                                    \
	}
CREATOR_CB(create_account)
CREATOR_CB(activate_account)
CREATOR_CB(is_alias_used)
CREATOR_CB(link_account)
CREATOR_CB(activate_alias)
CREATOR_CB(is_account_linked)
CREATOR_CB(is_account_activated)
CREATOR_CB(is_account_exist)
CREATOR_CB(recover_account)
CREATOR_CB(login_linphone_account)
CREATOR_CB(send_token)
CREATOR_CB(update_account)
CREATOR_CB(delete_account)

/* The FlexiAPI backend's account creation with a token: a service function with no public
   wrapper in 5.1 (its answer comes to the create_account callback). */
static LinphoneAccountCreatorStatus create_with_token(LinphoneAccountCreator *creator) {
	LinphoneAccountCreatorRequestFunc fn =
		linphone_account_creator_service_get_create_account_with_token_cb(linphone_account_creator_get_service(creator));
	return fn ? fn(creator) : LinphoneAccountCreatorStatusRequestFailed;
}

typedef LinphoneAccountCreatorStatus (*CreatorRequestFn)(LinphoneAccountCreator *creator);

/* Each request the XML-RPC backend sends (method in the comment); `creator_run <op>`. */
static const struct {
	const char *op;
	CreatorRequestFn fn;
} CREATOR_REQUESTS[] = {
	{"create_account", linphone_account_creator_create_account},             /* create_phone_account */
	{"activate_account", linphone_account_creator_activate_account},         /* activate_phone_account */
	{"is_alias_used", linphone_account_creator_is_alias_used},               /* is_phone_number_used */
	{"link_account", linphone_account_creator_link_account},                 /* link_phone_number_with_account */
	{"activate_alias", linphone_account_creator_activate_alias},             /* activate_phone_number_link */
	{"is_account_linked", linphone_account_creator_is_account_linked},       /* get_phone_number_for_account */
	{"is_account_activated", linphone_account_creator_is_account_activated}, /* is_account_activated */
	{"is_account_exist", linphone_account_creator_is_account_exist},         /* get_phone_number_for_account */
	{"recover_account", linphone_account_creator_recover_account},           /* recover_phone_account */
	{"login_linphone_account", linphone_account_creator_login_linphone_account},
	/* ^ recover_account_from_confirmation_key; on FlexiAPI: POST tokens (send_token callback) */
	{"update_account", linphone_account_creator_update_account}, /* FlexiAPI: accounts/me/password */
	/* FlexiAPI only (see the FlexiAPI README): */
	{"create_with_token", create_with_token},                           /* accounts/with-token */
	{"delete_account", linphone_account_creator_delete_account_flexiapi}, /* DELETE accounts/me */
};

static int cmd_creator(Client *c, int argc, char **argv, Sb *err) {
	(void)argc;
	(void)err;
	if (c->creator) linphone_account_creator_unref(c->creator);
	/* The apps pass their `[assistant] xmlrpc_url` here; the default backend of 5.1 is XML-RPC. */
	c->creator = linphone_account_creator_new(c->lc, argv[0]);
	LinphoneAccountCreatorCbs *cbs = linphone_factory_create_account_creator_cbs(c->factory);
	linphone_account_creator_cbs_set_create_account(cbs, on_creator_create_account);
	linphone_account_creator_cbs_set_activate_account(cbs, on_creator_activate_account);
	linphone_account_creator_cbs_set_is_alias_used(cbs, on_creator_is_alias_used);
	linphone_account_creator_cbs_set_link_account(cbs, on_creator_link_account);
	linphone_account_creator_cbs_set_activate_alias(cbs, on_creator_activate_alias);
	linphone_account_creator_cbs_set_is_account_linked(cbs, on_creator_is_account_linked);
	linphone_account_creator_cbs_set_is_account_activated(cbs, on_creator_is_account_activated);
	linphone_account_creator_cbs_set_is_account_exist(cbs, on_creator_is_account_exist);
	linphone_account_creator_cbs_set_recover_account(cbs, on_creator_recover_account);
	linphone_account_creator_cbs_set_login_linphone_account(cbs, on_creator_login_linphone_account);
	linphone_account_creator_cbs_set_send_token(cbs, on_creator_send_token);
	linphone_account_creator_cbs_set_update_account(cbs, on_creator_update_account);
	linphone_account_creator_cbs_set_delete_account(cbs, on_creator_delete_account);
	linphone_account_creator_add_callbacks(c->creator, cbs);
	linphone_account_creator_cbs_unref(cbs);
	return 0;
}

static int cmd_creator_set(Client *c, int argc, char **argv, Sb *err) {
	if (!c->creator) return fail(err, "create the account creator first (creator <xmlrpc-url>)");
	const char *field = argv[0], *value = is_none(argv[1]) ? NULL : argv[1];
	int status; /* each setter answers its own enum: Ok is 0, except for the phone number's mask */
	if (strcmp(field, "username") == 0) status = (int)linphone_account_creator_set_username(c->creator, value);
	else if (strcmp(field, "phone") == 0) {
		if (argc < 3) return fail(err, "creator_set phone <number> <country-code>");
		status = (int)linphone_account_creator_set_phone_number(c->creator, value, argv[2]);
		if (status == LinphoneAccountCreatorPhoneNumberStatusOk) status = 0;
	} else if (strcmp(field, "password") == 0) status = (int)linphone_account_creator_set_password(c->creator, value);
	else if (strcmp(field, "ha1") == 0) status = (int)linphone_account_creator_set_ha1(c->creator, value);
	else if (strcmp(field, "code") == 0) status = (int)linphone_account_creator_set_activation_code(c->creator, value);
	else if (strcmp(field, "domain") == 0) status = (int)linphone_account_creator_set_domain(c->creator, value);
	else if (strcmp(field, "algorithm") == 0) status = (int)linphone_account_creator_set_algorithm(c->creator, value);
	else if (strcmp(field, "language") == 0) status = (int)linphone_account_creator_set_language(c->creator, value);
	/* FlexiAPI: the push parameters and the token it sent, and update_account's new password
	   (read from the creator's user data, as on XML-RPC). */
	else if (strcmp(field, "pn_provider") == 0) linphone_account_creator_set_pn_provider(c->creator, value), status = 0;
	else if (strcmp(field, "pn_param") == 0) linphone_account_creator_set_pn_param(c->creator, value), status = 0;
	else if (strcmp(field, "pn_prid") == 0) linphone_account_creator_set_pn_prid(c->creator, value), status = 0;
	else if (strcmp(field, "token") == 0) linphone_account_creator_set_token(c->creator, value), status = 0;
	else if (strcmp(field, "new_password") == 0) {
		free(c->new_password);
		c->new_password = value ? strdup(value) : NULL;
		linphone_account_creator_set_user_data(c->creator, c->new_password);
		status = 0;
	} else return fail(err, "unknown creator field %s", field);
	if (status != 0) return fail(err, "the SDK refused %s (status %d)", field, status);
	return 0;
}

static int run_creator_request(Client *c, const char *op, Sb *err, LinphoneAccountCreatorStatus *status) {
	if (!c->creator) return fail(err, "create the account creator first (creator <xmlrpc-url>)");
	for (size_t i = 0; i < sizeof(CREATOR_REQUESTS) / sizeof(CREATOR_REQUESTS[0]); i++) {
		if (strcmp(CREATOR_REQUESTS[i].op, op) != 0) continue;
		*status = CREATOR_REQUESTS[i].fn(c->creator);
		return 0;
	}
	return fail(err, "unknown creator request %s", op);
}

static int cmd_creator_run(Client *c, int argc, char **argv, Sb *err) {
	(void)argc;
	LinphoneAccountCreatorStatus status;
	if (run_creator_request(c, argv[0], err, &status) != 0) return -1;
	/* RequestOk means sent; the answer arrives later as a `creator` event. */
	if (status != LinphoneAccountCreatorStatusRequestOk)
		return fail(err, "%s not sent: %s", argv[0], creator_status_name(status));
	return 0;
}

/* Several FlexiAPI requests answer RequestFailed at once although they are sent (5.1): send
   and report that status, never an error. */
static int cmd_creator_send(Client *c, int argc, char **argv, Sb *err) {
	(void)argc;
	LinphoneAccountCreatorStatus status;
	if (run_creator_request(c, argv[0], err, &status) != 0) return -1;
	Sb sb = {0};
	ev_begin(&sb, "creator_sent");
	ev_str(&sb, "op", argv[0]);
	ev_str(&sb, "status", creator_status_name(status));
	ev_emit(&sb);
	sb_free(&sb);
	return 0;
}

/* As an app does once the assistant made the account: an account in the core from the
   creator's fields and the core's `[proxy_default_values]`, made the default. */
static int cmd_creator_create_account(Client *c, int argc, char **argv, Sb *err) {
	(void)argc;
	(void)argv;
	if (!c->creator) return fail(err, "create the account creator first (creator <xmlrpc-url>)");
	LinphoneProxyConfig *cfg = linphone_account_creator_create_proxy_config(c->creator);
	if (!cfg) return fail(err, "the SDK made no account");
	adopt_default_account(c);
	return c->account ? 0 : fail(err, "no default account after create_proxy_config");
}

static int cmd_help(Client *c, int argc, char **argv, Sb *err);

/* Add a command here: name, minimum argument count, handler, usage shown by `help`. */
static const Command COMMANDS[] = {
	{"account", 4, cmd_account,
	 "<identity> <password|-> <proxy-uri> <register 0|1> [<intl-prefix|->] [expires=N] [userid=U] [realm=R] "
	 "[outbound=0|1]"},
	{"friend", 2, cmd_friend, "<name> <phone-number|sip-uri>..."},
	{"subscribe", 1, cmd_subscribe, "<rls-uri|- for [sip] rls_uri>"},
	{"unsubscribe", 0, cmd_unsubscribe, ""},
	{"presence", 1, cmd_presence, "<phone-number|sip-uri as given to friend>"},
	{"friends", 0, cmd_friends, ""},
	{"user_agent", 1, cmd_user_agent, "<name> [<version>]"},
	{"config", 3, cmd_config, "<section> <key> <value|- to remove>"},
	{"refresh_register", 0, cmd_refresh_register, ""},
	{"network", 1, cmd_network, "<reachable 0|1>"},
	{"iterate", 1, cmd_iterate, "<ms>"},
	{"creator", 1, cmd_creator, "<xmlrpc-url>"},
	{"creator_set", 2, cmd_creator_set,
	 "username|phone|password|ha1|code|domain|algorithm|language <value|-> [<country-code> for phone]"},
	{"creator_run", 1, cmd_creator_run,
	 "create_account|activate_account|is_alias_used|link_account|activate_alias|is_account_linked|"
	 "is_account_activated|is_account_exist|recover_account|login_linphone_account|update_account|"
	 "create_with_token|delete_account"},
	{"creator_send", 1, cmd_creator_send, "<op> (as creator_run, reporting the SDK's immediate status)"},
	{"creator_create_account", 0, cmd_creator_create_account, ""},
	{"restart", 0, cmd_restart, ""},
	{"config_get", 2, cmd_config_get, "<section> <key>"},
	{"auth", 5, cmd_auth, "<username> <password|-> <ha1|-> <algorithm|-> <domain>"},
	{"account_register", 1, cmd_account_register, "<0|1>"},
	{"account_prefix", 1, cmd_account_prefix, "<international prefix>"},
	{"help", 0, cmd_help, ""},
	{"quit", 0, cmd_quit, "[now]"},
};

static int cmd_help(Client *c, int argc, char **argv, Sb *err) {
	(void)c;
	(void)argc;
	(void)argv;
	(void)err;
	Sb sb = {0};
	for (size_t i = 0; i < sizeof(COMMANDS) / sizeof(COMMANDS[0]); i++) {
		ev_begin(&sb, "usage");
		ev_str(&sb, "cmd", COMMANDS[i].name);
		ev_str(&sb, "args", COMMANDS[i].usage);
		ev_emit(&sb);
	}
	sb_free(&sb);
	return 0;
}

static int hexval(int ch) {
	if (ch >= '0' && ch <= '9') return ch - '0';
	ch = tolower(ch);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

static void percent_decode(char *s) {
	char *out = s;
	for (char *p = s; *p; p++) {
		int hi, lo;
		if (p[0] == '%' && (hi = hexval((unsigned char)p[1])) >= 0 && (lo = hexval((unsigned char)p[2])) >= 0) {
			*out++ = (char)(hi * 16 + lo);
			p += 2;
		} else {
			*out++ = *p;
		}
	}
	*out = '\0';
}

static void run_line(Client *c, char *line, long seq) {
	char *argv[MAX_ARGS];
	int argc = 0;
	for (char *tok = strtok(line, " \t\r"); tok; tok = strtok(NULL, " \t\r")) {
		if (argc == MAX_ARGS) break;
		percent_decode(tok);
		argv[argc++] = tok;
	}
	if (argc == 0) return;
	Sb err = {0}, sb = {0};
	const Command *cmd = NULL;
	for (size_t i = 0; i < sizeof(COMMANDS) / sizeof(COMMANDS[0]); i++) {
		if (strcmp(COMMANDS[i].name, argv[0]) == 0) cmd = &COMMANDS[i];
	}
	int rc;
	if (!cmd) rc = fail(&err, "unknown command (try help)");
	else if (argc - 1 < cmd->min_args) rc = fail(&err, "usage: %s %s", cmd->name, cmd->usage);
	else rc = cmd->fn(c, argc - 1, argv + 1, &err);
	ev_begin(&sb, rc == 0 ? "ok" : "error");
	ev_int(&sb, "seq", seq);
	ev_str(&sb, "cmd", argv[0]);
	if (rc != 0) ev_str(&sb, "message", err.buf ? err.buf : "failed");
	ev_emit(&sb);
	sb_free(&sb);
	sb_free(&err);
}

/* ---------------------------------------------------------------- start-up */

/* Defaults for a headless test client: random local ports, IPv4 loopback, no media. */
static const char *const CONFIG_DEFAULTS[] = {
	"sip.sip_port=-1",
	"sip.sip_tcp_port=-1",
	"sip.sip_tls_port=0",
	"sip.use_ipv6=0",
	/* Without this flag the SDK deletes use_ipv6 from the file on start. */
	"sip.ipv6_migration_done=1",
	"sip.ping_with_options=0",
	"sip.subscribe_presence_only_when_registered=1",
	"video.capture=0",
	"video.display=0",
	"video.automatically_initiate=0",
	"video.automatically_accept=0",
	"net.stun_server=",
};
#define NDEFAULTS ((int)(sizeof(CONFIG_DEFAULTS) / sizeof(CONFIG_DEFAULTS[0])))

/* Writes the defaults, then the section.key=value settings of the command line over them. */
static int write_config(const char *path, int argc, char **argv) {
	int total = NDEFAULTS + argc;
	const char **entries = calloc((size_t)total, sizeof(char *));
	if (!entries) return -1;
	for (int i = 0; i < total; i++) {
		entries[i] = i < NDEFAULTS ? CONFIG_DEFAULTS[i] : argv[i - NDEFAULTS];
		const char *dot = strchr(entries[i], '.');
		if (!dot || !strchr(dot, '=')) {
			fprintf(stderr, "bad setting %s (want section.key=value)\n", entries[i]);
			free(entries);
			return -1;
		}
	}
	FILE *f = fopen(path, "w");
	if (!f) {
		free(entries);
		return -1;
	}
	for (int i = 0; i < total; i++) {
		size_t slen = (size_t)(strchr(entries[i], '.') - entries[i]);
		int seen = 0;
		for (int j = 0; j < i && !seen; j++) seen = strncmp(entries[j], entries[i], slen + 1) == 0;
		if (seen) continue; /* section already written */
		fprintf(f, "[%.*s]\n", (int)slen, entries[i]);
		for (int j = i; j < total; j++) {
			if (strncmp(entries[j], entries[i], slen + 1) != 0) continue;
			size_t klen = (size_t)(strchr(entries[j], '=') - entries[j]) + 1;
			int overridden = 0;
			for (int k = j + 1; k < total && !overridden; k++) overridden = strncmp(entries[k], entries[j], klen) == 0;
			if (!overridden) fprintf(f, "%s\n", entries[j] + slen + 1);
		}
	}
	free(entries);
	return fclose(f);
}

static void emit_ready(Client *c) {
	Sb sb = {0};
	LinphoneTransports *tr = linphone_core_get_transports_used(c->lc);
	ev_begin(&sb, "ready");
	ev_str(&sb, "version", linphone_core_get_version());
	ev_int(&sb, "udp_port", linphone_transports_get_udp_port(tr));
	ev_int(&sb, "tcp_port", linphone_transports_get_tcp_port(tr));
	ev_int(&sb, "pid", (long)getpid());
	ev_emit(&sb);
	linphone_transports_unref(tr);
	sb_free(&sb);
}

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: %s <work-dir> [section.key=value ...]\n", argv[0]);
		return 2;
	}
	/* Keep our own handle on stdout, then point fd 1 at stderr so that nothing the SDK
	   prints can corrupt the event stream. */
	int events_fd = dup(STDOUT_FILENO);
	if (events_fd < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) return 2;
	events_out = fdopen(events_fd, "w");
	if (!events_out) return 2;

	Client *c = &client;
	snprintf(c->work_dir, sizeof(c->work_dir), "%s", argv[1]);
	char path[4200];
	snprintf(path, sizeof(path), "%s/sdk.log", c->work_dir);
	sdk_log = fopen(path, "a");

	LinphoneLoggingService *logging = linphone_logging_service_get();
	LinphoneLoggingServiceCbs *log_cbs = linphone_factory_create_logging_service_cbs(linphone_factory_get());
	linphone_logging_service_cbs_set_log_message_written(log_cbs, on_log);
	linphone_logging_service_add_callbacks(logging, log_cbs);
	linphone_logging_service_cbs_unref(log_cbs);
	/* Message level is needed: the list subscription state is only visible there. */
	linphone_logging_service_set_log_level_mask(
		logging, LinphoneLogLevelMessage | LinphoneLogLevelWarning | LinphoneLogLevelError | LinphoneLogLevelFatal);

	snprintf(path, sizeof(path), "%s/lpclient.rc", c->work_dir);
	if (write_config(path, argc - 2, argv + 2) != 0) return 2;

	c->factory = linphone_factory_get();
	linphone_factory_set_data_dir(c->factory, c->work_dir);
	linphone_factory_set_config_dir(c->factory, c->work_dir);
	linphone_factory_set_download_dir(c->factory, c->work_dir);
	c->lc = linphone_factory_create_core_3(c->factory, path, NULL, NULL);
	if (!c->lc) return 3;

	LinphoneCoreCbs *cbs = linphone_factory_create_core_cbs(c->factory);
	linphone_core_cbs_set_account_registration_state_changed(cbs, on_registration);
	linphone_core_cbs_set_configuring_status(cbs, on_configuring);
	linphone_core_cbs_set_global_state_changed(cbs, on_global_state);
	linphone_core_add_callbacks(c->lc, cbs);
	linphone_core_cbs_unref(cbs);

	linphone_core_set_use_files(c->lc, TRUE);
	linphone_core_enable_video_capture(c->lc, FALSE);
	linphone_core_enable_video_display(c->lc, FALSE);
	if (linphone_core_start(c->lc) != 0) return 3;
	core_started(c);
	emit_ready(c);

	static char line[LINE_MAX_LEN];
	size_t used = 0;
	long seq = 0;
	int eof = 0;
	fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
	while (!c->quit && !eof) {
		struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
		int ready = poll(&pfd, 1, 10);
		linphone_core_iterate(c->lc);
		if (ready <= 0) continue;
		ssize_t n = read(STDIN_FILENO, line + used, sizeof(line) - 1 - used);
		if (n == 0) eof = 1;
		if (n < 0 && errno != EAGAIN && errno != EINTR) eof = 1;
		if (n > 0) used += (size_t)n;
		char *nl;
		while (!c->quit && (nl = memchr(line, '\n', used))) {
			*nl = '\0';
			size_t consumed = (size_t)(nl - line) + 1;
			char *start = line;
			while (*start == ' ' || *start == '\t' || *start == '\r') start++;
			if (*start) run_line(c, line, ++seq);
			memmove(line, line + consumed, used - consumed);
			used -= consumed;
		}
		if (used == sizeof(line) - 1) {
			fprintf(stderr, "command line too long, dropped\n");
			used = 0;
		}
	}

	/* linphone_core_stop ends subscriptions and unregisters, waiting up to ~2 s for answers. */
	linphone_core_stop(c->lc);
	if (c->creator) linphone_account_creator_unref(c->creator);
	free(c->new_password);
	if (c->list) linphone_friend_list_unref(c->list);
	for (int i = 0; i < c->nfriends; i++) {
		linphone_friend_unref(c->friends[i].lf);
		free(c->friends[i].name);
	}
	if (c->account) linphone_account_unref(c->account);
	linphone_core_unref(c->lc);
	Sb sb = {0};
	ev_begin(&sb, "stopped");
	ev_emit(&sb);
	sb_free(&sb);
	if (sdk_log) fclose(sdk_log);
	return 0;
}
