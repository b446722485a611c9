"""PostgreSQL sweep: take back every path into a store that its users could have opened.

A role that owns a schema (a user's ``u_alice``, a team's ``t_team1``) can, while
someone holds it, hand its data to others in ways that outlive the revocation of
that someone: grants to other roles or to ``PUBLIC``, default privileges that grant
future tables, membership in the role itself (PostgreSQL 15 lets a session user
grant its own role), ``SECURITY DEFINER`` functions that run as the role wherever
they are called from (a trigger on another user's table keeps calling one without
any privilege check), and objects owned by the role in another user's schema.

:func:`plan_sweep` lists, as SQL statements, what must change so that only the
owning role (and the hub's admin) holds anything of the store; :func:`sweep`
executes them. ``enertef-hub check`` shows the plan without executing it, so an
admin can audit a running system. Statements are built with ``psycopg.sql`` from
names read out of the catalogue; a routine's argument list is PostgreSQL's own
rendering (``pg_get_function_identity_arguments``), already quoted by the server.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from .pg_membership import temporary_membership

#: pg_class.relkind -> the keyword ALTER/GRANT use for it.
_RELATION_KEYWORDS = {
    "r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE", "f": "FOREIGN TABLE",
}
_GRANT_KEYWORDS = {"r": "TABLE", "p": "TABLE", "v": "TABLE", "m": "TABLE", "f": "TABLE", "S": "SEQUENCE"}
_ROUTINE_KEYWORDS = {"f": "FUNCTION", "p": "PROCEDURE", "a": "AGGREGATE", "w": "FUNCTION"}
#: pg_default_acl.defaclobjtype -> ALTER DEFAULT PRIVILEGES object class.
_DEFAULT_ACL_KEYWORDS = {"r": "TABLES", "S": "SEQUENCES", "f": "FUNCTIONS", "T": "TYPES", "n": "SCHEMAS"}


@dataclass(frozen=True)
class SweepAction:
    """One change of the sweep: what it closes (for people) and the statement that does it."""

    description: str
    statement: sql.Composable
    #: Roles (besides the swept one) the admin must be a member of to execute it: an
    #: object's current and new owner.
    roles: tuple[str, ...] = ()


async def _rows(conn: psycopg.AsyncConnection, query: str, params: dict) -> list[tuple]:
    cur = await conn.execute(query, params)
    return await cur.fetchall()


def _grantee(name: str | None) -> sql.Composable:
    return sql.SQL("PUBLIC") if name is None else sql.Identifier(name)


def _routine(nsp: str, name: str, args: str) -> sql.Composable:
    return sql.SQL("{}({})").format(sql.Identifier(nsp, name), sql.SQL(args))


def _grant_target(kind: str, nsp: str | None, name: str, args: str | None = None) -> tuple[sql.Composable, str]:
    """What ``REVOKE ... ON`` names, and its description for people, for one object of the
    grant queries: ``SCHEMA``, ``REL:<relkind>``, ``FN:<prokind>``, ``TYPE`` or a large object."""
    if kind == "SCHEMA":
        return sql.SQL("SCHEMA {}").format(sql.Identifier(name)), f"schema {name}"
    if kind.startswith("REL:"):
        return (sql.SQL("{} {}").format(sql.SQL(_GRANT_KEYWORDS[kind[4:]]), sql.Identifier(nsp, name)),
                f"{_RELATION_KEYWORDS[kind[4:]].lower()} {nsp}.{name}")
    if kind.startswith("FN:"):
        return (sql.SQL("{} {}").format(sql.SQL("ROUTINE" if kind[3:] != "a" else "FUNCTION"),
                                        _routine(nsp, name, args)),
                f"routine {nsp}.{name}({args})")
    if kind == "TYPE":
        return sql.SQL("TYPE {}").format(sql.Identifier(nsp, name)), f"type {nsp}.{name}"
    return sql.SQL("LARGE OBJECT {}").format(sql.Literal(int(name))), f"large object {name}"


async def plan_reown(conn: psycopg.AsyncConnection, role: str, schema: str) -> list[SweepAction]:
    """Statements that make ``role`` own everything in ``schema``, and nothing elsewhere.

    Objects of other roles in the schema become the role's; objects of the role in
    another schema are given to that schema's owner (so a function or view left in
    alice's schema runs as alice, never as the team).
    """
    params = {"role": role, "schema": schema}
    actions: list[SweepAction] = []
    for (owner,) in await _rows(conn, """
            SELECT pg_get_userbyid(n.nspowner) FROM pg_namespace n
            WHERE n.nspname = %(schema)s AND n.nspowner <> (SELECT oid FROM pg_roles WHERE rolname = %(role)s)""",
            params):
        actions.append(SweepAction(f"schema {schema} owned by {owner}", sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(
            sql.Identifier(schema), sql.Identifier(role)), (owner,)))
    # Sequences owned by a column follow their table; ALTER on them would fail.
    relations = await _rows(conn, """
        SELECT c.relkind, n.nspname, c.relname, pg_get_userbyid(c.relowner),
               CASE WHEN n.nspname = %(schema)s THEN %(role)s ELSE pg_get_userbyid(n.nspowner) END
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND n.nspname NOT LIKE 'pg\\_%%'
          AND ((n.nspname = %(schema)s AND pg_get_userbyid(c.relowner) <> %(role)s)
               OR (n.nspname <> %(schema)s AND pg_get_userbyid(c.relowner) = %(role)s))
          AND NOT (c.relkind = 'S' AND EXISTS (
                SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
        ORDER BY c.relkind DESC, n.nspname, c.relname""", params)
    for kind, nsp, name, owner, new_owner in relations:
        actions.append(SweepAction(
            f"{_RELATION_KEYWORDS[kind].lower()} {nsp}.{name} owned by {owner}",
            sql.SQL("ALTER {} {} OWNER TO {}").format(
                sql.SQL(_RELATION_KEYWORDS[kind]), sql.Identifier(nsp, name), sql.Identifier(new_owner)),
            (owner, new_owner)))
    routines = await _rows(conn, """
        SELECT p.prokind, n.nspname, p.proname, pg_get_function_identity_arguments(p.oid),
               pg_get_userbyid(p.proowner),
               CASE WHEN n.nspname = %(schema)s THEN %(role)s ELSE pg_get_userbyid(n.nspowner) END
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname NOT LIKE 'pg\\_%%'
          AND ((n.nspname = %(schema)s AND pg_get_userbyid(p.proowner) <> %(role)s)
               OR (n.nspname <> %(schema)s AND pg_get_userbyid(p.proowner) = %(role)s))
        ORDER BY n.nspname, p.proname""", params)
    for kind, nsp, name, args, owner, new_owner in routines:
        keyword = _ROUTINE_KEYWORDS.get(kind, "ROUTINE")
        actions.append(SweepAction(
            f"{keyword.lower()} {nsp}.{name}({args}) owned by {owner}",
            sql.SQL("ALTER {} {} OWNER TO {}").format(sql.SQL(keyword), _routine(nsp, name, args),
                                                     sql.Identifier(new_owner)),
            (owner, new_owner)))
    types = await _rows(conn, """
        SELECT n.nspname, t.typname, pg_get_userbyid(t.typowner),
               CASE WHEN n.nspname = %(schema)s THEN %(role)s ELSE pg_get_userbyid(n.nspowner) END
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typtype IN ('c', 'd', 'e', 'r') AND n.nspname NOT LIKE 'pg\\_%%'
          AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
          AND ((n.nspname = %(schema)s AND pg_get_userbyid(t.typowner) <> %(role)s)
               OR (n.nspname <> %(schema)s AND pg_get_userbyid(t.typowner) = %(role)s))
        ORDER BY n.nspname, t.typname""", params)
    for nsp, name, owner, new_owner in types:
        actions.append(SweepAction(
            f"type {nsp}.{name} owned by {owner}",
            sql.SQL("ALTER TYPE {} OWNER TO {}").format(sql.Identifier(nsp, name), sql.Identifier(new_owner)),
            (owner, new_owner)))
    return actions


async def plan_privileges(conn: psycopg.AsyncConnection, role: str, schema: str, *,
                          members_allowed: str | bool = False) -> list[SweepAction]:
    """Statements that leave privileges on ``schema`` and ``role``'s objects to ``role`` (and the admin) only.

    ``members_allowed``: a regular expression of the members ``role`` may keep (a
    team's members' team logins, which the hub grants); False: none but the admin
    (a user's role), so any other member is revoked; True: every member is kept.
    """
    params = {"role": role, "schema": schema}
    actions: list[SweepAction] = []
    # Grants to anyone but the owning role and the admin (current_user), PUBLIC
    # included. Routines without an ACL (PostgreSQL's default: EXECUTE for PUBLIC,
    # e.g. MLflow's trigger functions) are left alone: nobody else can reach the
    # schema to call them, and what runs as the owner is handled below.
    grants = await _rows(conn, """
        WITH target AS (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s),
        keep AS (SELECT oid FROM pg_roles WHERE rolname IN (%(role)s, current_user))
        SELECT 'SCHEMA', NULL, %(schema)s, NULL, g.name FROM (
            SELECT DISTINCT CASE a.grantee WHEN 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END AS name
            FROM pg_namespace n, aclexplode(n.nspacl) a
            WHERE n.oid IN (SELECT oid FROM target) AND a.grantee NOT IN (SELECT oid FROM keep)) g
        UNION ALL
        SELECT DISTINCT 'REL:' || c.relkind::text, n.nspname, c.relname, NULL,
               CASE a.grantee WHEN 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND n.oid IN (SELECT oid FROM target)
          AND a.grantee NOT IN (SELECT oid FROM keep)
        UNION ALL
        SELECT DISTINCT 'FN:' || p.prokind::text, n.nspname, p.proname, pg_get_function_identity_arguments(p.oid),
               CASE a.grantee WHEN 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
             aclexplode(p.proacl) a
        WHERE n.oid IN (SELECT oid FROM target) AND a.grantee NOT IN (SELECT oid FROM keep)
        UNION ALL
        SELECT DISTINCT 'TYPE', n.nspname, t.typname, NULL,
               CASE a.grantee WHEN 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace, aclexplode(t.typacl) a
        WHERE n.oid IN (SELECT oid FROM target) AND t.typacl IS NOT NULL
          AND a.grantee NOT IN (SELECT oid FROM keep)
        UNION ALL
        SELECT DISTINCT 'LO', NULL, l.oid::text, NULL,
               CASE a.grantee WHEN 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END
        FROM pg_largeobject_metadata l, aclexplode(l.lomacl) a
        WHERE pg_get_userbyid(l.lomowner) = %(role)s AND a.grantee NOT IN (SELECT oid FROM keep)
        ORDER BY 1, 2, 3""", params)
    for kind, nsp, name, args, grantee in grants:
        who = grantee or "PUBLIC"
        target, what = _grant_target(kind, nsp, name, args)
        actions.append(SweepAction(f"{what}: privileges of {who}", sql.SQL("REVOKE ALL ON {} FROM {} CASCADE").format(
            target, _grantee(grantee))))
    # Default privileges the role set for its future objects, for anyone else.
    defaults = await _rows(conn, """
        SELECT DISTINCT d.defaclobjtype, n.nspname,
               CASE a.grantee WHEN 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END
        FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace, aclexplode(d.defaclacl) a
        WHERE pg_get_userbyid(d.defaclrole) = %(role)s
          AND a.grantee NOT IN (SELECT oid FROM pg_roles WHERE rolname IN (%(role)s, current_user))
        ORDER BY 1, 2, 3""", params)
    for objtype, nsp, grantee in defaults:
        keyword = _DEFAULT_ACL_KEYWORDS.get(objtype)
        if keyword is None:
            continue
        scope = sql.SQL(" IN SCHEMA {}").format(sql.Identifier(nsp)) if nsp else sql.SQL("")
        actions.append(SweepAction(
            f"default privileges of {role} on future {keyword.lower()}{' in ' + nsp if nsp else ''}"
            f" for {grantee or 'PUBLIC'}",
            sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {}{} REVOKE ALL ON {} FROM {} CASCADE").format(
                sql.Identifier(role), scope, sql.SQL(keyword), _grantee(grantee))))
    # Functions that run as the role: made to run as their caller instead.
    for kind, nsp, name, args in await _rows(conn, """
            SELECT p.prokind, n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE p.prosecdef AND (n.nspname = %(schema)s OR pg_get_userbyid(p.proowner) = %(role)s)
            ORDER BY 2, 3""", params):
        keyword = _ROUTINE_KEYWORDS.get(kind, "ROUTINE")
        actions.append(SweepAction(
            f"{keyword.lower()} {nsp}.{name}({args}) runs as its owner (SECURITY DEFINER)",
            sql.SQL("ALTER {} {} SECURITY INVOKER").format(sql.SQL(keyword), _routine(nsp, name, args))))
    if members_allowed is not True:
        for (member,) in await _rows(conn, """
                SELECT pg_get_userbyid(m.member) FROM pg_auth_members m
                WHERE m.roleid = (SELECT oid FROM pg_roles WHERE rolname = %(role)s)
                  AND pg_get_userbyid(m.member) <> current_user
                  AND (%(allowed)s::text IS NULL OR pg_get_userbyid(m.member) !~ %(allowed)s)
                ORDER BY 1""", {**params, "allowed": members_allowed or None}):
            actions.append(SweepAction(f"role {role} granted to {member}", sql.SQL("REVOKE {} FROM {} CASCADE").format(
                sql.Identifier(role), sql.Identifier(member))))
    return actions


#: Triggers MLflow's own migrations make (table, trigger, function), kept by the sweep.
MLFLOW_TRIGGERS = frozenset({("secrets", "prevent_secrets_aad_mutation", "prevent_secrets_aad_mutation")})


async def plan_code(conn: psycopg.AsyncConnection, role: str, schema: str) -> list[SweepAction]:
    """Statements that remove what in ``schema`` runs code when someone else uses its tables.

    Triggers (but MLflow's own, :data:`MLFLOW_TRIGGERS`), rules other than a view's,
    row-level security policies (and row security itself), and the publications and
    event triggers the role owns. A team member could leave any of them to act in
    other members' sessions; a store's MLflow needs none of them.
    """
    params = {"role": role, "schema": schema}
    actions: list[SweepAction] = []
    for table, name, function in await _rows(conn, """
            SELECT c.relname, t.tgname, p.proname FROM pg_trigger t
            JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_proc p ON p.oid = t.tgfoid
            WHERE n.nspname = %(schema)s AND NOT t.tgisinternal ORDER BY 1, 2""", params):
        if (table, name, function) in MLFLOW_TRIGGERS:
            continue
        actions.append(SweepAction(f"trigger {name} on {schema}.{table}", sql.SQL("DROP TRIGGER {} ON {}").format(
            sql.Identifier(name), sql.Identifier(schema, table))))
    for table, name in await _rows(conn, """
            SELECT c.relname, r.rulename FROM pg_rewrite r
            JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %(schema)s AND r.rulename <> '_RETURN' ORDER BY 1, 2""", params):
        actions.append(SweepAction(f"rule {name} on {schema}.{table}", sql.SQL("DROP RULE {} ON {}").format(
            sql.Identifier(name), sql.Identifier(schema, table))))
    for table, name in await _rows(conn, """
            SELECT c.relname, p.polname FROM pg_policy p
            JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %(schema)s ORDER BY 1, 2""", params):
        actions.append(SweepAction(f"policy {name} on {schema}.{table}", sql.SQL("DROP POLICY {} ON {}").format(
            sql.Identifier(name), sql.Identifier(schema, table))))
    for (table,) in await _rows(conn, """
            SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %(schema)s AND (c.relrowsecurity OR c.relforcerowsecurity) ORDER BY 1""", params):
        actions.append(SweepAction(
            f"row-level security on {schema}.{table}",
            sql.SQL("ALTER TABLE {} NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY").format(
                sql.Identifier(schema, table))))
    for (name,) in await _rows(conn, """
            SELECT pubname FROM pg_publication WHERE pg_get_userbyid(pubowner) = %(role)s ORDER BY 1""", params):
        actions.append(SweepAction(f"publication {name}", sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(name))))
    for (name,) in await _rows(conn, """
            SELECT evtname FROM pg_event_trigger WHERE pg_get_userbyid(evtowner) = %(role)s ORDER BY 1""", params):
        actions.append(SweepAction(f"event trigger {name}", sql.SQL("DROP EVENT TRIGGER {}").format(
            sql.Identifier(name))))
    return actions


async def plan_held_elsewhere(conn: psycopg.AsyncConnection, role: str, schema: str) -> list[SweepAction]:
    """Statements that take back what others granted ``role`` outside ``schema``.

    A member acting as a team could have their own store grant the team a way in
    (``INSERT`` on a table of theirs, for a trigger to copy team data into); once
    they leave, nothing outside the team's store may still be reachable from it. Each
    is revoked as the object's owner (``roles``), who made the grant.
    """
    params = {"role": role, "schema": schema}
    actions: list[SweepAction] = []
    for kind, nsp, name, owner in await _rows(conn, """
            WITH me AS (SELECT oid FROM pg_roles WHERE rolname = %(role)s)
            SELECT DISTINCT 'SCHEMA', NULL, n.nspname, pg_get_userbyid(n.nspowner)
            FROM pg_namespace n, aclexplode(n.nspacl) a
            WHERE n.nspname <> %(schema)s AND a.grantee = (SELECT oid FROM me) AND n.nspowner <> a.grantee
            UNION ALL
            SELECT DISTINCT 'REL:' || c.relkind::text, n.nspname, c.relname, pg_get_userbyid(c.relowner)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
            WHERE n.nspname <> %(schema)s AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
              AND a.grantee = (SELECT oid FROM me) AND c.relowner <> a.grantee
            ORDER BY 1, 2, 3""", params):
        target, what = _grant_target(kind, nsp, name)
        actions.append(SweepAction(f"{what}: privileges {owner} gave {role}",
                                   sql.SQL("REVOKE ALL ON {} FROM {} CASCADE").format(target, sql.Identifier(role)),
                                   (owner,)))
    return actions


async def flagged_names(conn: psycopg.AsyncConnection) -> set[str]:
    """Names of schemas and roles that a sweep might change something in, in one pass over the catalogue.

    ``enertef-hub check`` plans the sweep in detail only for stores found here, so
    auditing a system with thousands of stores stays a few queries.
    """
    cur = await conn.execute("""
        WITH ns AS (SELECT oid, nspname, nspowner, nspacl FROM pg_namespace
                    WHERE nspname NOT LIKE 'pg\\_%%' AND nspname <> 'information_schema')
        SELECT n.nspname FROM ns n, aclexplode(n.nspacl) a WHERE a.grantee NOT IN (n.nspowner, %(me)s)
        UNION SELECT n.nspname FROM pg_class c JOIN ns n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
              WHERE a.grantee NOT IN (c.relowner, %(me)s)
        UNION SELECT n.nspname FROM pg_proc p JOIN ns n ON n.oid = p.pronamespace, aclexplode(p.proacl) a
              WHERE a.grantee NOT IN (p.proowner, %(me)s)
        UNION SELECT n.nspname FROM pg_proc p JOIN ns n ON n.oid = p.pronamespace WHERE p.prosecdef
        UNION SELECT n.nspname FROM pg_type t JOIN ns n ON n.oid = t.typnamespace, aclexplode(t.typacl) a
              WHERE a.grantee NOT IN (t.typowner, %(me)s)
        UNION SELECT x.name FROM (
              SELECT n.nspname, c.relowner, n.nspowner FROM pg_class c JOIN ns n ON n.oid = c.relnamespace
              UNION ALL SELECT n.nspname, p.proowner, n.nspowner FROM pg_proc p JOIN ns n ON n.oid = p.pronamespace
              UNION ALL SELECT n.nspname, t.typowner, n.nspowner FROM pg_type t JOIN ns n ON n.oid = t.typnamespace
              ) o, LATERAL (VALUES (o.nspname), (pg_get_userbyid(o.relowner))) x(name)
              WHERE o.relowner <> o.nspowner
        UNION SELECT pg_get_userbyid(d.defaclrole) FROM pg_default_acl d, aclexplode(d.defaclacl) a
              WHERE a.grantee NOT IN (d.defaclrole, %(me)s)
        UNION SELECT pg_get_userbyid(l.lomowner) FROM pg_largeobject_metadata l, aclexplode(l.lomacl) a
              WHERE a.grantee NOT IN (l.lomowner, %(me)s)
        UNION SELECT pg_get_userbyid(m.roleid) FROM pg_auth_members m
              WHERE m.member <> %(me)s AND pg_get_userbyid(m.roleid) LIKE 'u\\_%%'
        UNION SELECT pg_get_userbyid(m.roleid) FROM pg_auth_members m
              WHERE m.member <> %(me)s AND pg_get_userbyid(m.roleid) LIKE 't\\_%%'
                AND pg_get_userbyid(m.member) !~ ('^m_' || substr(pg_get_userbyid(m.roleid), 3) || '_')
        UNION SELECT n.nspname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
              JOIN ns n ON n.oid = c.relnamespace JOIN pg_proc p ON p.oid = t.tgfoid
              WHERE NOT t.tgisinternal AND (c.relname, t.tgname, p.proname)
                    NOT IN (SELECT * FROM unnest(%(mlflow_tables)s::text[], %(mlflow_triggers)s::text[],
                                                  %(mlflow_functions)s::text[]))
        UNION SELECT n.nspname FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
              JOIN ns n ON n.oid = c.relnamespace WHERE r.rulename <> '_RETURN'
        UNION SELECT n.nspname FROM pg_class c JOIN ns n ON n.oid = c.relnamespace
              WHERE c.relrowsecurity OR c.relforcerowsecurity
              OR EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)
        UNION SELECT pg_get_userbyid(a.grantee) FROM pg_class c JOIN ns n ON n.oid = c.relnamespace,
              aclexplode(c.relacl) a
              WHERE a.grantee NOT IN (c.relowner, %(me)s) AND pg_get_userbyid(a.grantee) LIKE 't\\_%%'
        UNION SELECT pg_get_userbyid(pubowner) FROM pg_publication
        UNION SELECT pg_get_userbyid(evtowner) FROM pg_event_trigger
        """, {"me": await _current_user_oid(conn),
              "mlflow_tables": [t for t, _, _ in MLFLOW_TRIGGERS], "mlflow_triggers": [n for _, n, _ in MLFLOW_TRIGGERS],
              "mlflow_functions": [f for _, _, f in MLFLOW_TRIGGERS]})
    return {name for (name,) in await cur.fetchall()}


async def _current_user_oid(conn: psycopg.AsyncConnection) -> int:
    cur = await conn.execute("SELECT oid FROM pg_roles WHERE rolname = current_user")
    return int((await cur.fetchone())[0])


async def plan_sweep(conn: psycopg.AsyncConnection, role: str, schema: str, *,
                     members_allowed: str | bool = False) -> list[SweepAction]:
    """Everything :func:`sweep` would change, without changing anything (for ``check``)."""
    if not await _role_exists(conn, role):
        return []
    return (await plan_reown(conn, role, schema)
            + await plan_privileges(conn, role, schema, members_allowed=members_allowed)
            + await plan_held_elsewhere(conn, role, schema)
            + await plan_code(conn, role, schema))


async def sweep(conn: psycopg.AsyncConnection, role: str, schema: str, *,
                members_allowed: str | bool = False) -> list[str]:
    """Re-own and re-grant ``schema`` so only ``role`` (and the admin) holds anything; return what changed.

    Run inside the caller's transaction. Ownership first: ``ALTER ... OWNER`` also
    moves the old owner's privileges, which the second pass then sees. The admin
    acts as a member of ``role`` and of every owner involved, for the sweep only
    (:mod:`.pg_membership`); after the first pass ``role`` owns all that the second
    touches.
    """
    if not await _role_exists(conn, role):
        return []
    done = []
    reown = await plan_reown(conn, role, schema)
    async with temporary_membership(conn, role, *{r for action in reown for r in action.roles}):
        for action in reown:
            await conn.execute(action.statement)
            done.append(action.description)
        for action in await plan_privileges(conn, role, schema, members_allowed=members_allowed):
            await conn.execute(action.statement)
            done.append(action.description)
        for action in await plan_code(conn, role, schema):
            await conn.execute(action.statement)
            done.append(action.description)
    # Revoking what others granted the role needs their rights, one grantor at a time.
    for action in await plan_held_elsewhere(conn, role, schema):
        async with temporary_membership(conn, *action.roles):
            await conn.execute(action.statement)
        done.append(action.description)
    return done


async def terminate_sessions(conn: psycopg.AsyncConnection, role: str) -> int:
    """End every session logged in as ``role``; returns how many."""
    cur = await conn.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = %s", (role,))
    return int((await cur.fetchone())[0])


async def _role_exists(conn: psycopg.AsyncConnection, role: str) -> bool:
    cur = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    return await cur.fetchone() is not None
