CREATE TABLE IF NOT EXISTS "{table}" (
  "id" BIGSERIAL NOT NULL,
  "sid" VARCHAR NOT NULL,
  "create_date" TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL,
  "protocol_header" JSONB NOT NULL,
  "data_header" JSONB NOT NULL,
  "raw" VARCHAR NOT NULL
) PARTITION BY RANGE ("create_date")
;
CREATE INDEX IF NOT EXISTS "{table}_create_date" ON "{table}" ("create_date")
;
CREATE INDEX IF NOT EXISTS "{table}_sid" ON "{table}" ("sid")
;
CREATE INDEX IF NOT EXISTS "{table}_srcip" ON "{table}" (("protocol_header"->>'srcIp'))
;
CREATE INDEX IF NOT EXISTS "{table}_dstip" ON "{table}" (("protocol_header"->>'dstIp'))
;
CREATE INDEX IF NOT EXISTS "{table}_correlation_id" ON "{table}" (("protocol_header"->>'correlation_id'))
;
CREATE INDEX IF NOT EXISTS "{table}_ruri_domain" ON "{table}" (("data_header"->>'ruri_domain'))
;
CREATE INDEX IF NOT EXISTS "{table}_ruri_user" ON "{table}" (("data_header"->>'ruri_user'))
;
CREATE INDEX IF NOT EXISTS "{table}_from_user" ON "{table}" (("data_header"->>'from_user'))
;
CREATE INDEX IF NOT EXISTS "{table}_to_user" ON "{table}" (("data_header"->>'to_user'))
;
CREATE INDEX IF NOT EXISTS "{table}_pid_user" ON "{table}" (("data_header"->>'pid_user'))
;
CREATE INDEX IF NOT EXISTS "{table}_auth_user" ON "{table}" (("data_header"->>'auth_user'))
;
CREATE INDEX IF NOT EXISTS "{table}_callid" ON "{table}" (("data_header"->>'callid'))
;
CREATE INDEX IF NOT EXISTS "{table}_method" ON "{table}" (("data_header"->>'method'))
