CREATE TABLE IF NOT EXISTS `{table}` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `sid` VARCHAR(512) NOT NULL DEFAULT '',
  `create_date` DATETIME(6) NOT NULL,
  `protocol_header` JSON NOT NULL,
  `data_header` JSON NOT NULL,
  `raw` MEDIUMTEXT NOT NULL,
  `src_ip` VARCHAR(60) GENERATED ALWAYS AS (LEFT(JSON_UNQUOTE(JSON_EXTRACT(`protocol_header`, '$.srcIp')), 60)) VIRTUAL,
  `dst_ip` VARCHAR(60) GENERATED ALWAYS AS (LEFT(JSON_UNQUOTE(JSON_EXTRACT(`protocol_header`, '$.dstIp')), 60)) VIRTUAL,
  `correlation_id` VARCHAR(256) GENERATED ALWAYS AS (LEFT(JSON_UNQUOTE(JSON_EXTRACT(`protocol_header`, '$.correlation_id')), 256)) VIRTUAL,
  PRIMARY KEY (`id`, `create_date`),
  KEY `create_date` (`create_date`),
  KEY `sid` (`sid`),
  KEY `src_ip` (`src_ip`),
  KEY `dst_ip` (`dst_ip`),
  KEY `correlation_id` (`correlation_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
