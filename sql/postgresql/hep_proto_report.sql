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
