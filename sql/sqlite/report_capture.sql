CREATE TABLE IF NOT EXISTS "{table}" (
  "id" INTEGER PRIMARY KEY AUTOINCREMENT,
  "date" DATETIME NOT NULL DEFAULT '1900-01-01 00:00:01',
  "micro_ts" BIGINT NOT NULL DEFAULT 0,
  "correlation_id" VARCHAR(256) NOT NULL DEFAULT '',
  "source_ip" VARCHAR(60) NOT NULL DEFAULT '',
  "source_port" INTEGER NOT NULL DEFAULT 0,
  "destination_ip" VARCHAR(60) NOT NULL DEFAULT '',
  "destination_port" INTEGER NOT NULL DEFAULT 0,
  "proto" INTEGER NOT NULL DEFAULT 0,
  "family" INTEGER DEFAULT NULL,
  "type" INTEGER NOT NULL DEFAULT 0,
  "node" VARCHAR(125) NOT NULL DEFAULT '',
  "msg" BLOB NOT NULL DEFAULT ''
)
;
CREATE INDEX IF NOT EXISTS "{table}_date" ON "{table}" ("date")
;
CREATE INDEX IF NOT EXISTS "{table}_correlation_id" ON "{table}" ("correlation_id")
