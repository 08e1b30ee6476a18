/* Unit tests for common/channel.c: channel names, namespaces and who may subscribe or publish. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "channel.h"
#include "config.h"
#include "errors.h"
#include "token.h"

#define ME "0123456789abcdef0123456789abcdef"
#define OTHER "fedcba9876543210fedcba9876543210"

static struct config cfg;

static int
setup(void **state)
{
    (void)state;
    config_defaults(&cfg);
    return 0;
}

static int
parse(const char *name, struct channel *channel)
{
    return channel_parse(&cfg, name, strlen(name), channel);
}

/* A page naming a channel wrongly would be told why, not subscribed to something else. */
static void
test_names_are_checked(void **state)
{
    (void)state;
    struct channel channel;
    assert_int_equal(parse("project:42", &channel), 0);
    assert_string_equal(channel.ns->name, "project");
    assert_int_equal(channel.rest_len, 2);
    assert_int_equal(parse("task:a.b_c-d:e", &channel), 0);
    assert_int_equal(parse("user:" ME, &channel), 0);
    static const char *const bad[] = {
        "", "project", "project:", ":42", "project:4 2", "project:4*", "project:\xc3\xa9",
        "user:abc", "user:task:1", "user:" ME "0", "user:0123456789ABCDEF0123456789ABCDEF",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (parse(bad[i], &channel) != CHANNEL_E_BAD_NAME)
            fail_msg("'%s' was not refused as a bad name", bad[i]);
    assert_int_equal(channel_parse(&cfg, "project:4\0x", 11, &channel), CHANNEL_E_BAD_NAME);
    assert_int_equal(parse("room:1", &channel), CHANNEL_E_UNKNOWN_NAMESPACE);
    char longest[CONFIG_CHANNEL_NAME_LIMIT + 2];
    memset(longest, 'a', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0';
    memcpy(longest, "task:", 5);
    assert_int_equal(parse(longest, &channel), CHANNEL_E_TOO_LONG);
    longest[cfg.channel_name_max] = '\0';
    assert_int_equal(parse(longest, &channel), 0);
    assert_string_equal(channel_refusal_name(CHANNEL_E_TOO_LONG), "too_long");
    assert_string_equal(channel_refusal_name(-1), "internal");
}

/* A user's own channel is the client id on the wire (old publishers reach it); others their
 * name, so a tap can subscribe to one channel by its name. */
static void
test_topics(void **state)
{
    (void)state;
    struct channel channel;
    const char *topic;
    size_t len;
    assert_int_equal(parse("user:" ME, &channel), 0);
    channel_topic(&channel, &topic, &len);
    assert_int_equal(len, 32);
    assert_memory_equal(topic, ME, 32);
    assert_int_equal(parse("project:42", &channel), 0);
    channel_topic(&channel, &topic, &len);
    assert_int_equal(len, 10);
    assert_memory_equal(topic, "project:42", 10);
}

/* Grants of a token: a pattern ends in '*'; each entry adds its permissions. */
static void
add_grant(struct token_grants *grants, const char *name, unsigned permissions)
{
    struct token_grant *grant = &grants->grants[grants->count++];
    grant->len = (uint8_t)strlen(name);
    grant->permissions = (uint8_t)permissions;
    memcpy(grant->name, name, grant->len);
}

/* Each namespace rule admits exactly whom CONFIG.md says: a wrong one would show one user's
 * room to another. */
static void
test_subscribe_rules(void **state)
{
    (void)state;
    struct token_grants grants = {0};
    add_grant(&grants, "project:42", TOKEN_GRANT_SUBSCRIBE);
    add_grant(&grants, "task:7*", TOKEN_GRANT_SUBSCRIBE | TOKEN_GRANT_PUBLISH);
    add_grant(&grants, "project:9", TOKEN_GRANT_PUBLISH);
    struct channel channel;
    /* owner */
    assert_int_equal(parse("user:" ME, &channel), 0);
    assert_int_equal(channel_may_subscribe(&channel, ME, NULL), 0);
    assert_int_equal(channel_may_subscribe(&channel, OTHER, &grants), CHANNEL_E_NOT_ALLOWED);
    /* claim: exact, pattern, publish-only does not subscribe, none at all */
    assert_int_equal(parse("project:42", &channel), 0);
    assert_int_equal(channel_may_subscribe(&channel, ME, &grants), 0);
    assert_int_equal(channel_may_subscribe(&channel, ME, NULL), CHANNEL_E_NOT_ALLOWED);
    assert_int_equal(parse("project:420", &channel), 0);
    assert_int_equal(channel_may_subscribe(&channel, ME, &grants), CHANNEL_E_NOT_ALLOWED);
    assert_int_equal(parse("task:7", &channel), 0);
    assert_int_equal(channel_may_subscribe(&channel, ME, &grants), 0);
    assert_int_equal(parse("task:7abc", &channel), 0);
    assert_int_equal(channel_may_subscribe(&channel, ME, &grants), 0);
    assert_int_equal(parse("task:8", &channel), 0);
    assert_int_equal(channel_may_subscribe(&channel, ME, &grants), CHANNEL_E_NOT_ALLOWED);
    assert_int_equal(parse("project:9", &channel), 0);
    assert_int_equal(channel_may_subscribe(&channel, ME, &grants), CHANNEL_E_NOT_ALLOWED);
    /* "*" grants every channel */
    struct token_grants all = {0};
    add_grant(&all, "*", TOKEN_GRANT_SUBSCRIBE);
    assert_int_equal(channel_may_subscribe(&channel, ME, &all), 0);
    /* signed_in */
    struct config_namespace lobby = {"lobby", CONFIG_SUBSCRIBE_SIGNED_IN, CONFIG_PUBLISH_NOBODY, 0, 0};
    channel.ns = &lobby;
    assert_int_equal(channel_may_subscribe(&channel, OTHER, NULL), 0);
}

/* Publishing as a client needs the namespace's "members" and, under a claim, "publish". */
static void
test_publish_rules(void **state)
{
    (void)state;
    struct token_grants grants = {0};
    add_grant(&grants, "project:42", TOKEN_GRANT_SUBSCRIBE);
    add_grant(&grants, "project:9", TOKEN_GRANT_PUBLISH);
    struct channel channel;
    assert_int_equal(parse("project:9", &channel), 0);
    assert_int_equal(channel_may_publish(&channel, ME, &grants), 0);
    assert_int_equal(parse("project:42", &channel), 0);
    assert_int_equal(channel_may_publish(&channel, ME, &grants), CHANNEL_E_PUBLISH_NOT_ALLOWED);
    assert_int_equal(parse("user:" ME, &channel), 0); /* user: publish = nobody */
    assert_int_equal(channel_may_publish(&channel, ME, &grants), CHANNEL_E_PUBLISH_NOT_ALLOWED);
    struct config_namespace closed = {"closed", CONFIG_SUBSCRIBE_CLAIM, CONFIG_PUBLISH_NOBODY, 0, 0};
    assert_int_equal(parse("project:9", &channel), 0);
    channel.ns = &closed;
    assert_int_equal(channel_may_publish(&channel, ME, &grants), CHANNEL_E_PUBLISH_NOT_ALLOWED);
    struct config_namespace open = {"open", CONFIG_SUBSCRIBE_SIGNED_IN, CONFIG_PUBLISH_MEMBERS, 0, 0};
    channel.ns = &open;
    assert_int_equal(channel_may_publish(&channel, OTHER, NULL), 0);
    struct config_namespace mine = {"mine", CONFIG_SUBSCRIBE_OWNER, CONFIG_PUBLISH_MEMBERS, 0, 0};
    channel.ns = &mine;
    channel.rest = ME;
    channel.rest_len = 32;
    assert_int_equal(channel_may_publish(&channel, ME, NULL), 0);
    assert_int_equal(channel_may_publish(&channel, OTHER, NULL), CHANNEL_E_PUBLISH_NOT_ALLOWED);
}

/* A token's claim comes back as grants, and a minted claim verifies to the same grants. */
static void
test_grants_from_tokens(void **state)
{
    (void)state;
    static const unsigned char secret[] = "0123456789abcdef0123456789abcdef";
    json_t *claim = json_pack("{s:[s], s:[s,s]}", "project:42", "subscribe", "task:*",
                              "subscribe", "publish");
    char token[TOKEN_MAX], sub[TOKEN_ID_SIZE], err[128];
    assert_int_equal(token_issue_channels(secret, 32, ME, 1000, 2000, claim, token, sizeof token),
                     0);
    struct token_grants grants;
    assert_int_equal(token_verify_grants(secret, 32, token, strlen(token), 1500, sub, &grants, err,
                                         sizeof err),
                     0);
    assert_int_equal(grants.count, 2);
    assert_int_equal(token_grants_permissions(&grants, "project:42", 10), TOKEN_GRANT_SUBSCRIBE);
    assert_int_equal(token_grants_permissions(&grants, "task:1", 6),
                     TOKEN_GRANT_SUBSCRIBE | TOKEN_GRANT_PUBLISH);
    assert_int_equal(token_grants_permissions(&grants, "project:4", 9), 0);
    /* expired: no grants */
    assert_int_equal(token_verify_grants(secret, 32, token, strlen(token), 2500, sub, &grants, err,
                                         sizeof err),
                     TW_E_UNAUTHORIZED);
    assert_int_equal(grants.count, 0);
    json_decref(claim);
    /* a claim verify would refuse is not minted */
    claim = json_pack("{s:[s]}", "project:42", "own");
    assert_int_equal(token_issue_channels(secret, 32, ME, 1000, 2000, claim, token, sizeof token),
                     TW_E_BAD_REQUEST);
    json_decref(claim);
}

/* [namespace NAME] sections declare namespaces and change the built-in ones, never "user". */
static void
test_namespace_config(void **state)
{
    (void)state;
    char dir[] = "/tmp/tw-channel-XXXXXX", path[64], err[256] = "";
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/t.conf", dir);
    static const struct {
        const char *text, *says;
    } cases[] = {
        {"[namespace room]\nsubscribe = signed_in\npublish = members\n"
         "[namespace project]\nsubscribe = owner\n[channels]\nmax_per_connection = 3\n"
         "max_name = 40\nmax_per_task = 2\n",
         NULL},
        {"[namespace user]\nsubscribe = claim\n", "the user namespace is built in"},
        {"[namespace room]\nsubscribe = everyone\n", "subscribe must be owner, claim or signed_in"},
        {"[namespace room]\npublish = all\n", "publish must be nobody or members"},
        {"[namespace room]\nhistory = 10\n", "unknown key 'history' in [namespace room]"},
        {"[namespace Room]\npublish = nobody\n", "namespace name must be"},
        {"[channels]\nmax_name = 65\n", "max_name"},
        {"[channels]\nmax_per_task = 17\n", "max_per_task"},
    };
    static struct config loaded;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FILE *file = fopen(path, "w");
        fputs(cases[i].text, file);
        fclose(file);
        err[0] = '\0';
        int rc = config_load(&loaded, path, err, sizeof err);
        if (!cases[i].says) {
            assert_int_equal(rc, 0);
            const struct config_namespace *room = config_namespace_find(&loaded, "room", 4);
            assert_non_null(room);
            assert_int_equal(room->subscribe, CONFIG_SUBSCRIBE_SIGNED_IN);
            assert_int_equal(room->publish, CONFIG_PUBLISH_MEMBERS);
            assert_int_equal(config_namespace_find(&loaded, "project", 7)->subscribe,
                             CONFIG_SUBSCRIBE_OWNER);
            assert_int_equal(config_namespace_find(&loaded, "task", 4)->subscribe,
                             CONFIG_SUBSCRIBE_CLAIM);
            assert_int_equal(loaded.channels_per_connection, 3);
            assert_int_equal(loaded.channel_name_max, 40);
            assert_int_equal(loaded.channels_per_task, 2);
        } else {
            assert_int_equal(rc, TW_E_CONFIG);
            if (!strstr(err, cases[i].says))
                fail_msg("'%s' said '%s'", cases[i].text, err);
        }
    }
    unlink(path);
    rmdir(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_are_checked),   cmocka_unit_test(test_topics),
        cmocka_unit_test(test_subscribe_rules),     cmocka_unit_test(test_publish_rules),
        cmocka_unit_test(test_grants_from_tokens),  cmocka_unit_test(test_namespace_config),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
