CREATE TABLE IF NOT EXISTS `{table}` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `date` DATETIME NOT NULL DEFAULT '1900-01-01 00:00:01',
  `micro_ts` BIGINT NOT NULL DEFAULT 0,
  `correlation_id` VARCHAR(256) NOT NULL DEFAULT '',
  `source_ip` VARCHAR(60) NOT NULL DEFAULT '',
  `source_port` INT NOT NULL DEFAULT 0,
  `destination_ip` VARCHAR(60) NOT NULL DEFAULT '',
  `destination_port` INT NOT NULL DEFAULT 0,
  `proto` INT NOT NULL DEFAULT 0,
  `family` INT DEFAULT NULL,
  `type` INT NOT NULL DEFAULT 0,
  `node` VARCHAR(125) NOT NULL DEFAULT '',
  `msg` LONGBLOB NOT NULL,
  PRIMARY KEY (`id`, `date`),
  KEY `date` (`date`),
  KEY `correlation_id` (`correlation_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
