"""The site's §4.1 status as a column kept by PostgreSQL (`pv_sites_site.status`).

`fleet_site_status(site)` is the rule of fleet/queries.py (`status_expression`): abnormal when
an inverter of the site is in fault; online when an inverter runs or stands by or a gateway is
online; offline otherwise. Row triggers on the inverter and gateway tables recompute the sites a
change touches — a device added or removed, its status changed, or moved to another site — so
no code path (ingest's bulk SQL, the offline sweep, the admin) can leave a site's status behind.
Updates that leave status and site as they were (ingest's `last_seen_at`) fire nothing.
"""

from django.db import migrations

FUNCTIONS = """
CREATE OR REPLACE FUNCTION fleet_site_status(p_site bigint) RETURNS varchar
LANGUAGE sql STABLE AS $$
  SELECT CASE
    WHEN EXISTS (SELECT 1 FROM inverters_inverter
                  WHERE site_id = p_site AND status = 'fault') THEN 'abnormal'
    WHEN EXISTS (SELECT 1 FROM inverters_inverter
                  WHERE site_id = p_site AND status IN ('running', 'standby'))
      OR EXISTS (SELECT 1 FROM gateways_gateway
                  WHERE site_id = p_site AND status = 'online') THEN 'online'
    ELSE 'offline'
  END
$$;

CREATE OR REPLACE FUNCTION fleet_refresh_site_status(p_site bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  computed varchar := fleet_site_status(p_site);
BEGIN
  UPDATE pv_sites_site SET status = computed WHERE id = p_site AND status <> computed;
END
$$;

CREATE OR REPLACE FUNCTION fleet_device_site_status() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' AND OLD.site_id IS NOT NULL THEN
    PERFORM fleet_refresh_site_status(OLD.site_id);
  END IF;
  -- The new site, unless it is the old one (refreshed just above).
  IF TG_OP <> 'DELETE' AND NEW.site_id IS NOT NULL
     AND (TG_OP = 'INSERT' OR NEW.site_id IS DISTINCT FROM OLD.site_id) THEN
    PERFORM fleet_refresh_site_status(NEW.site_id);
  END IF;
  RETURN NULL;
END
$$;
"""

TRIGGERS = """
CREATE TRIGGER fleet_site_status_on_change AFTER UPDATE OF status, site_id ON {table}
  FOR EACH ROW
  WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.site_id IS DISTINCT FROM NEW.site_id)
  EXECUTE FUNCTION fleet_device_site_status();
CREATE TRIGGER fleet_site_status_on_add_remove AFTER INSERT OR DELETE ON {table}
  FOR EACH ROW EXECUTE FUNCTION fleet_device_site_status();
"""

BACKFILL = """
UPDATE pv_sites_site SET status = fleet_site_status(id) WHERE status <> fleet_site_status(id);
"""

TABLES = ("inverters_inverter", "gateways_gateway")

FORWARD = FUNCTIONS + "".join(TRIGGERS.format(table=t) for t in TABLES) + BACKFILL
BACKWARD = (
    "".join(
        f"DROP TRIGGER IF EXISTS fleet_site_status_on_change ON {t};"
        f"DROP TRIGGER IF EXISTS fleet_site_status_on_add_remove ON {t};"
        for t in TABLES
    )
    + "DROP FUNCTION IF EXISTS fleet_device_site_status();"
    + "DROP FUNCTION IF EXISTS fleet_refresh_site_status(bigint);"
    + "DROP FUNCTION IF EXISTS fleet_site_status(bigint);"
)


class Migration(migrations.Migration):
    dependencies = [
        ("fleet", "0002_autotest"),
        ("pv_sites", "0002_site_status"),
        ("inverters", "0004_site_energy_monthly"),
        ("gateways", "0002_initial"),
    ]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
