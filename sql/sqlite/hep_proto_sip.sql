CREATE TABLE IF NOT EXISTS "{table}" (
  "id" INTEGER PRIMARY KEY AUTOINCREMENT,
  "sid" VARCHAR(512) NOT NULL DEFAULT '',
  "create_date" DATETIME NOT NULL,
  "protocol_header" TEXT NOT NULL DEFAULT '{}',
  "data_header" TEXT NOT NULL DEFAULT '{}',
  "raw" TEXT NOT NULL DEFAULT ''
)
;
CREATE INDEX IF NOT EXISTS "{table}_create_date" ON "{table}" ("create_date")
;
CREATE INDEX IF NOT EXISTS "{table}_sid" ON "{table}" ("sid")
;
CREATE INDEX IF NOT EXISTS "{table}_srcip" ON "{table}" (json_extract("protocol_header", '$.srcIp'))
;
CREATE INDEX IF NOT EXISTS "{table}_dstip" ON "{table}" (json_extract("protocol_header", '$.dstIp'))
;
CREATE INDEX IF NOT EXISTS "{table}_correlation_id" ON "{table}" (json_extract("protocol_header", '$.correlation_id'))
;
CREATE INDEX IF NOT EXISTS "{table}_ruri_user" ON "{table}" (json_extract("data_header", '$.ruri_user'))
;
CREATE INDEX IF NOT EXISTS "{table}_from_user" ON "{table}" (json_extract("data_header", '$.from_user'))
;
CREATE INDEX IF NOT EXISTS "{table}_to_user" ON "{table}" (json_extract("data_header", '$.to_user'))
;
CREATE INDEX IF NOT EXISTS "{table}_method" ON "{table}" (json_extract("data_header", '$.method'))
