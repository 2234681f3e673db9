-- The dashboard's figures, kept per hour as executions end, so that a dashboard
-- reads at most a window's hours of rollups (720 for 30 days) instead of every
-- execution in it. A trigger keeps them in the transaction that ends an
-- execution (every end is an UPDATE setting its status and "end"); executions
-- that had ended before this migration are counted by it. `regente store copy`
-- copies the rollups as they are (its INSERTs of ended executions fire nothing).
--
-- Counts by the hour an execution ended in: how many, and how long the robots
-- ran (busy_ms, for the runtimes' utilisation); reason is why an ERROR ended
-- (its first 200 characters), '' for the other statuses.
CREATE TABLE execution_hours (
    organization_id  TEXT NOT NULL,
    hour             BIGINT NOT NULL,
    robot_id         TEXT NOT NULL,
    runtime_id       TEXT NOT NULL,
    status           TEXT NOT NULL,
    reason           TEXT NOT NULL,
    runs             BIGINT NOT NULL,
    busy_ms          BIGINT NOT NULL,
    PRIMARY KEY (organization_id, hour, robot_id, runtime_id, status, reason)
);
-- Histograms for percentiles: how many runs of a robot that ended in the hour
-- took a time in each bucket. kind is 'duration' (start to end) or 'wait' (queued
-- to start). Bucket k holds times under round-up(100 ms x 1.25^k), the first
-- from 0, the last (76) everything longer: a percentile read from them is off
-- by at most a quarter.
CREATE TABLE execution_hour_times (
    organization_id  TEXT NOT NULL,
    hour             BIGINT NOT NULL,
    robot_id         TEXT NOT NULL,
    kind             TEXT NOT NULL,
    bucket           BIGINT NOT NULL,
    runs             BIGINT NOT NULL,
    PRIMARY KEY (organization_id, hour, robot_id, kind, bucket)
);

INSERT INTO execution_hours
SELECT organization_id, "end" - "end" % 3600000, robot_id, runtime_id, status,
       CASE WHEN status = 'ERROR' THEN substr(COALESCE(end_reason, ''), 1, 200) ELSE '' END,
       count(*), COALESCE(sum("end" - started), 0)
FROM executions
WHERE status IN ('FINISHED', 'ERROR', 'CANCELED') AND "end" IS NOT NULL
GROUP BY 1, 2, 3, 4, 5, 6;

INSERT INTO execution_hour_times
SELECT organization_id, hour, robot_id, 'duration', bucket, count(*)
FROM (SELECT organization_id, "end" - "end" % 3600000 AS hour, robot_id,
      CASE
        WHEN "end" - started < 100 THEN 0 WHEN "end" - started < 125 THEN 1 WHEN "end" - started < 157 THEN 2 WHEN "end" - started < 196 THEN 3 WHEN "end" - started < 245 THEN 4 WHEN "end" - started < 306 THEN 5
        WHEN "end" - started < 382 THEN 6 WHEN "end" - started < 477 THEN 7 WHEN "end" - started < 597 THEN 8 WHEN "end" - started < 746 THEN 9 WHEN "end" - started < 932 THEN 10 WHEN "end" - started < 1165 THEN 11
        WHEN "end" - started < 1456 THEN 12 WHEN "end" - started < 1819 THEN 13 WHEN "end" - started < 2274 THEN 14 WHEN "end" - started < 2843 THEN 15 WHEN "end" - started < 3553 THEN 16 WHEN "end" - started < 4441 THEN 17
        WHEN "end" - started < 5552 THEN 18 WHEN "end" - started < 6939 THEN 19 WHEN "end" - started < 8674 THEN 20 WHEN "end" - started < 10843 THEN 21 WHEN "end" - started < 13553 THEN 22 WHEN "end" - started < 16941 THEN 23
        WHEN "end" - started < 21176 THEN 24 WHEN "end" - started < 26470 THEN 25 WHEN "end" - started < 33088 THEN 26 WHEN "end" - started < 41360 THEN 27 WHEN "end" - started < 51699 THEN 28 WHEN "end" - started < 64624 THEN 29
        WHEN "end" - started < 80780 THEN 30 WHEN "end" - started < 100975 THEN 31 WHEN "end" - started < 126218 THEN 32 WHEN "end" - started < 157773 THEN 33 WHEN "end" - started < 197216 THEN 34 WHEN "end" - started < 246520 THEN 35
        WHEN "end" - started < 308149 THEN 36 WHEN "end" - started < 385186 THEN 37 WHEN "end" - started < 481483 THEN 38 WHEN "end" - started < 601854 THEN 39 WHEN "end" - started < 752317 THEN 40 WHEN "end" - started < 940396 THEN 41
        WHEN "end" - started < 1175495 THEN 42 WHEN "end" - started < 1469368 THEN 43 WHEN "end" - started < 1836710 THEN 44 WHEN "end" - started < 2295888 THEN 45 WHEN "end" - started < 2869860 THEN 46 WHEN "end" - started < 3587325 THEN 47
        WHEN "end" - started < 4484156 THEN 48 WHEN "end" - started < 5605194 THEN 49 WHEN "end" - started < 7006493 THEN 50 WHEN "end" - started < 8758116 THEN 51 WHEN "end" - started < 10947645 THEN 52 WHEN "end" - started < 13684556 THEN 53
        WHEN "end" - started < 17105695 THEN 54 WHEN "end" - started < 21382118 THEN 55 WHEN "end" - started < 26727648 THEN 56 WHEN "end" - started < 33409559 THEN 57 WHEN "end" - started < 41761949 THEN 58 WHEN "end" - started < 52202436 THEN 59
        WHEN "end" - started < 65253045 THEN 60 WHEN "end" - started < 81566306 THEN 61 WHEN "end" - started < 101957883 THEN 62 WHEN "end" - started < 127447353 THEN 63 WHEN "end" - started < 159309192 THEN 64 WHEN "end" - started < 199136489 THEN 65
        WHEN "end" - started < 248920612 THEN 66 WHEN "end" - started < 311150764 THEN 67 WHEN "end" - started < 388938455 THEN 68 WHEN "end" - started < 486173069 THEN 69 WHEN "end" - started < 607716336 THEN 70 WHEN "end" - started < 759645420 THEN 71
        WHEN "end" - started < 949556775 THEN 72 WHEN "end" - started < 1186945969 THEN 73 WHEN "end" - started < 1483682461 THEN 74 WHEN "end" - started < 1854603076 THEN 75
        ELSE 76 END AS bucket
      FROM executions
      WHERE status IN ('FINISHED', 'ERROR', 'CANCELED') AND "end" IS NOT NULL AND started IS NOT NULL) AS ended
GROUP BY 1, 2, 3, 4, 5;

INSERT INTO execution_hour_times
SELECT organization_id, hour, robot_id, 'wait', bucket, count(*)
FROM (SELECT organization_id, "end" - "end" % 3600000 AS hour, robot_id,
      CASE
        WHEN started - init < 100 THEN 0 WHEN started - init < 125 THEN 1 WHEN started - init < 157 THEN 2 WHEN started - init < 196 THEN 3 WHEN started - init < 245 THEN 4 WHEN started - init < 306 THEN 5
        WHEN started - init < 382 THEN 6 WHEN started - init < 477 THEN 7 WHEN started - init < 597 THEN 8 WHEN started - init < 746 THEN 9 WHEN started - init < 932 THEN 10 WHEN started - init < 1165 THEN 11
        WHEN started - init < 1456 THEN 12 WHEN started - init < 1819 THEN 13 WHEN started - init < 2274 THEN 14 WHEN started - init < 2843 THEN 15 WHEN started - init < 3553 THEN 16 WHEN started - init < 4441 THEN 17
        WHEN started - init < 5552 THEN 18 WHEN started - init < 6939 THEN 19 WHEN started - init < 8674 THEN 20 WHEN started - init < 10843 THEN 21 WHEN started - init < 13553 THEN 22 WHEN started - init < 16941 THEN 23
        WHEN started - init < 21176 THEN 24 WHEN started - init < 26470 THEN 25 WHEN started - init < 33088 THEN 26 WHEN started - init < 41360 THEN 27 WHEN started - init < 51699 THEN 28 WHEN started - init < 64624 THEN 29
        WHEN started - init < 80780 THEN 30 WHEN started - init < 100975 THEN 31 WHEN started - init < 126218 THEN 32 WHEN started - init < 157773 THEN 33 WHEN started - init < 197216 THEN 34 WHEN started - init < 246520 THEN 35
        WHEN started - init < 308149 THEN 36 WHEN started - init < 385186 THEN 37 WHEN started - init < 481483 THEN 38 WHEN started - init < 601854 THEN 39 WHEN started - init < 752317 THEN 40 WHEN started - init < 940396 THEN 41
        WHEN started - init < 1175495 THEN 42 WHEN started - init < 1469368 THEN 43 WHEN started - init < 1836710 THEN 44 WHEN started - init < 2295888 THEN 45 WHEN started - init < 2869860 THEN 46 WHEN started - init < 3587325 THEN 47
        WHEN started - init < 4484156 THEN 48 WHEN started - init < 5605194 THEN 49 WHEN started - init < 7006493 THEN 50 WHEN started - init < 8758116 THEN 51 WHEN started - init < 10947645 THEN 52 WHEN started - init < 13684556 THEN 53
        WHEN started - init < 17105695 THEN 54 WHEN started - init < 21382118 THEN 55 WHEN started - init < 26727648 THEN 56 WHEN started - init < 33409559 THEN 57 WHEN started - init < 41761949 THEN 58 WHEN started - init < 52202436 THEN 59
        WHEN started - init < 65253045 THEN 60 WHEN started - init < 81566306 THEN 61 WHEN started - init < 101957883 THEN 62 WHEN started - init < 127447353 THEN 63 WHEN started - init < 159309192 THEN 64 WHEN started - init < 199136489 THEN 65
        WHEN started - init < 248920612 THEN 66 WHEN started - init < 311150764 THEN 67 WHEN started - init < 388938455 THEN 68 WHEN started - init < 486173069 THEN 69 WHEN started - init < 607716336 THEN 70 WHEN started - init < 759645420 THEN 71
        WHEN started - init < 949556775 THEN 72 WHEN started - init < 1186945969 THEN 73 WHEN started - init < 1483682461 THEN 74 WHEN started - init < 1854603076 THEN 75
        ELSE 76 END AS bucket
      FROM executions
      WHERE status IN ('FINISHED', 'ERROR', 'CANCELED') AND "end" IS NOT NULL AND started IS NOT NULL) AS ended
GROUP BY 1, 2, 3, 4, 5;

CREATE FUNCTION executions_count_hourly() RETURNS trigger AS $$
BEGIN
    IF NEW.status IN ('FINISHED', 'ERROR', 'CANCELED') AND OLD.status NOT IN ('FINISHED', 'ERROR', 'CANCELED') AND NEW."end" IS NOT NULL THEN
        INSERT INTO execution_hours
            (organization_id, hour, robot_id, runtime_id, status, reason, runs, busy_ms)
        VALUES (NEW.organization_id, NEW."end" - NEW."end" % 3600000, NEW.robot_id, NEW.runtime_id,
                NEW.status, CASE WHEN NEW.status = 'ERROR' THEN substr(COALESCE(NEW.end_reason, ''), 1, 200) ELSE '' END, 1, COALESCE(NEW."end" - NEW.started, 0))
        ON CONFLICT (organization_id, hour, robot_id, runtime_id, status, reason)
        DO UPDATE SET runs = execution_hours.runs + 1,
                      busy_ms = execution_hours.busy_ms + EXCLUDED.busy_ms;
        IF NEW.started IS NOT NULL THEN
            INSERT INTO execution_hour_times (organization_id, hour, robot_id, kind, bucket, runs)
            VALUES (NEW.organization_id, NEW."end" - NEW."end" % 3600000, NEW.robot_id, 'duration',
                CASE
        WHEN NEW."end" - NEW.started < 100 THEN 0 WHEN NEW."end" - NEW.started < 125 THEN 1 WHEN NEW."end" - NEW.started < 157 THEN 2 WHEN NEW."end" - NEW.started < 196 THEN 3 WHEN NEW."end" - NEW.started < 245 THEN 4 WHEN NEW."end" - NEW.started < 306 THEN 5
        WHEN NEW."end" - NEW.started < 382 THEN 6 WHEN NEW."end" - NEW.started < 477 THEN 7 WHEN NEW."end" - NEW.started < 597 THEN 8 WHEN NEW."end" - NEW.started < 746 THEN 9 WHEN NEW."end" - NEW.started < 932 THEN 10 WHEN NEW."end" - NEW.started < 1165 THEN 11
        WHEN NEW."end" - NEW.started < 1456 THEN 12 WHEN NEW."end" - NEW.started < 1819 THEN 13 WHEN NEW."end" - NEW.started < 2274 THEN 14 WHEN NEW."end" - NEW.started < 2843 THEN 15 WHEN NEW."end" - NEW.started < 3553 THEN 16 WHEN NEW."end" - NEW.started < 4441 THEN 17
        WHEN NEW."end" - NEW.started < 5552 THEN 18 WHEN NEW."end" - NEW.started < 6939 THEN 19 WHEN NEW."end" - NEW.started < 8674 THEN 20 WHEN NEW."end" - NEW.started < 10843 THEN 21 WHEN NEW."end" - NEW.started < 13553 THEN 22 WHEN NEW."end" - NEW.started < 16941 THEN 23
        WHEN NEW."end" - NEW.started < 21176 THEN 24 WHEN NEW."end" - NEW.started < 26470 THEN 25 WHEN NEW."end" - NEW.started < 33088 THEN 26 WHEN NEW."end" - NEW.started < 41360 THEN 27 WHEN NEW."end" - NEW.started < 51699 THEN 28 WHEN NEW."end" - NEW.started < 64624 THEN 29
        WHEN NEW."end" - NEW.started < 80780 THEN 30 WHEN NEW."end" - NEW.started < 100975 THEN 31 WHEN NEW."end" - NEW.started < 126218 THEN 32 WHEN NEW."end" - NEW.started < 157773 THEN 33 WHEN NEW."end" - NEW.started < 197216 THEN 34 WHEN NEW."end" - NEW.started < 246520 THEN 35
        WHEN NEW."end" - NEW.started < 308149 THEN 36 WHEN NEW."end" - NEW.started < 385186 THEN 37 WHEN NEW."end" - NEW.started < 481483 THEN 38 WHEN NEW."end" - NEW.started < 601854 THEN 39 WHEN NEW."end" - NEW.started < 752317 THEN 40 WHEN NEW."end" - NEW.started < 940396 THEN 41
        WHEN NEW."end" - NEW.started < 1175495 THEN 42 WHEN NEW."end" - NEW.started < 1469368 THEN 43 WHEN NEW."end" - NEW.started < 1836710 THEN 44 WHEN NEW."end" - NEW.started < 2295888 THEN 45 WHEN NEW."end" - NEW.started < 2869860 THEN 46 WHEN NEW."end" - NEW.started < 3587325 THEN 47
        WHEN NEW."end" - NEW.started < 4484156 THEN 48 WHEN NEW."end" - NEW.started < 5605194 THEN 49 WHEN NEW."end" - NEW.started < 7006493 THEN 50 WHEN NEW."end" - NEW.started < 8758116 THEN 51 WHEN NEW."end" - NEW.started < 10947645 THEN 52 WHEN NEW."end" - NEW.started < 13684556 THEN 53
        WHEN NEW."end" - NEW.started < 17105695 THEN 54 WHEN NEW."end" - NEW.started < 21382118 THEN 55 WHEN NEW."end" - NEW.started < 26727648 THEN 56 WHEN NEW."end" - NEW.started < 33409559 THEN 57 WHEN NEW."end" - NEW.started < 41761949 THEN 58 WHEN NEW."end" - NEW.started < 52202436 THEN 59
        WHEN NEW."end" - NEW.started < 65253045 THEN 60 WHEN NEW."end" - NEW.started < 81566306 THEN 61 WHEN NEW."end" - NEW.started < 101957883 THEN 62 WHEN NEW."end" - NEW.started < 127447353 THEN 63 WHEN NEW."end" - NEW.started < 159309192 THEN 64 WHEN NEW."end" - NEW.started < 199136489 THEN 65
        WHEN NEW."end" - NEW.started < 248920612 THEN 66 WHEN NEW."end" - NEW.started < 311150764 THEN 67 WHEN NEW."end" - NEW.started < 388938455 THEN 68 WHEN NEW."end" - NEW.started < 486173069 THEN 69 WHEN NEW."end" - NEW.started < 607716336 THEN 70 WHEN NEW."end" - NEW.started < 759645420 THEN 71
        WHEN NEW."end" - NEW.started < 949556775 THEN 72 WHEN NEW."end" - NEW.started < 1186945969 THEN 73 WHEN NEW."end" - NEW.started < 1483682461 THEN 74 WHEN NEW."end" - NEW.started < 1854603076 THEN 75
        ELSE 76 END, 1)
            ON CONFLICT (organization_id, hour, robot_id, kind, bucket)
            DO UPDATE SET runs = execution_hour_times.runs + 1;
            INSERT INTO execution_hour_times (organization_id, hour, robot_id, kind, bucket, runs)
            VALUES (NEW.organization_id, NEW."end" - NEW."end" % 3600000, NEW.robot_id, 'wait',
                CASE
        WHEN NEW.started - NEW.init < 100 THEN 0 WHEN NEW.started - NEW.init < 125 THEN 1 WHEN NEW.started - NEW.init < 157 THEN 2 WHEN NEW.started - NEW.init < 196 THEN 3 WHEN NEW.started - NEW.init < 245 THEN 4 WHEN NEW.started - NEW.init < 306 THEN 5
        WHEN NEW.started - NEW.init < 382 THEN 6 WHEN NEW.started - NEW.init < 477 THEN 7 WHEN NEW.started - NEW.init < 597 THEN 8 WHEN NEW.started - NEW.init < 746 THEN 9 WHEN NEW.started - NEW.init < 932 THEN 10 WHEN NEW.started - NEW.init < 1165 THEN 11
        WHEN NEW.started - NEW.init < 1456 THEN 12 WHEN NEW.started - NEW.init < 1819 THEN 13 WHEN NEW.started - NEW.init < 2274 THEN 14 WHEN NEW.started - NEW.init < 2843 THEN 15 WHEN NEW.started - NEW.init < 3553 THEN 16 WHEN NEW.started - NEW.init < 4441 THEN 17
        WHEN NEW.started - NEW.init < 5552 THEN 18 WHEN NEW.started - NEW.init < 6939 THEN 19 WHEN NEW.started - NEW.init < 8674 THEN 20 WHEN NEW.started - NEW.init < 10843 THEN 21 WHEN NEW.started - NEW.init < 13553 THEN 22 WHEN NEW.started - NEW.init < 16941 THEN 23
        WHEN NEW.started - NEW.init < 21176 THEN 24 WHEN NEW.started - NEW.init < 26470 THEN 25 WHEN NEW.started - NEW.init < 33088 THEN 26 WHEN NEW.started - NEW.init < 41360 THEN 27 WHEN NEW.started - NEW.init < 51699 THEN 28 WHEN NEW.started - NEW.init < 64624 THEN 29
        WHEN NEW.started - NEW.init < 80780 THEN 30 WHEN NEW.started - NEW.init < 100975 THEN 31 WHEN NEW.started - NEW.init < 126218 THEN 32 WHEN NEW.started - NEW.init < 157773 THEN 33 WHEN NEW.started - NEW.init < 197216 THEN 34 WHEN NEW.started - NEW.init < 246520 THEN 35
        WHEN NEW.started - NEW.init < 308149 THEN 36 WHEN NEW.started - NEW.init < 385186 THEN 37 WHEN NEW.started - NEW.init < 481483 THEN 38 WHEN NEW.started - NEW.init < 601854 THEN 39 WHEN NEW.started - NEW.init < 752317 THEN 40 WHEN NEW.started - NEW.init < 940396 THEN 41
        WHEN NEW.started - NEW.init < 1175495 THEN 42 WHEN NEW.started - NEW.init < 1469368 THEN 43 WHEN NEW.started - NEW.init < 1836710 THEN 44 WHEN NEW.started - NEW.init < 2295888 THEN 45 WHEN NEW.started - NEW.init < 2869860 THEN 46 WHEN NEW.started - NEW.init < 3587325 THEN 47
        WHEN NEW.started - NEW.init < 4484156 THEN 48 WHEN NEW.started - NEW.init < 5605194 THEN 49 WHEN NEW.started - NEW.init < 7006493 THEN 50 WHEN NEW.started - NEW.init < 8758116 THEN 51 WHEN NEW.started - NEW.init < 10947645 THEN 52 WHEN NEW.started - NEW.init < 13684556 THEN 53
        WHEN NEW.started - NEW.init < 17105695 THEN 54 WHEN NEW.started - NEW.init < 21382118 THEN 55 WHEN NEW.started - NEW.init < 26727648 THEN 56 WHEN NEW.started - NEW.init < 33409559 THEN 57 WHEN NEW.started - NEW.init < 41761949 THEN 58 WHEN NEW.started - NEW.init < 52202436 THEN 59
        WHEN NEW.started - NEW.init < 65253045 THEN 60 WHEN NEW.started - NEW.init < 81566306 THEN 61 WHEN NEW.started - NEW.init < 101957883 THEN 62 WHEN NEW.started - NEW.init < 127447353 THEN 63 WHEN NEW.started - NEW.init < 159309192 THEN 64 WHEN NEW.started - NEW.init < 199136489 THEN 65
        WHEN NEW.started - NEW.init < 248920612 THEN 66 WHEN NEW.started - NEW.init < 311150764 THEN 67 WHEN NEW.started - NEW.init < 388938455 THEN 68 WHEN NEW.started - NEW.init < 486173069 THEN 69 WHEN NEW.started - NEW.init < 607716336 THEN 70 WHEN NEW.started - NEW.init < 759645420 THEN 71
        WHEN NEW.started - NEW.init < 949556775 THEN 72 WHEN NEW.started - NEW.init < 1186945969 THEN 73 WHEN NEW.started - NEW.init < 1483682461 THEN 74 WHEN NEW.started - NEW.init < 1854603076 THEN 75
        ELSE 76 END, 1)
            ON CONFLICT (organization_id, hour, robot_id, kind, bucket)
            DO UPDATE SET runs = execution_hour_times.runs + 1;
        END IF;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER executions_count_hourly AFTER UPDATE OF status ON executions
FOR EACH ROW EXECUTE FUNCTION executions_count_hourly();
