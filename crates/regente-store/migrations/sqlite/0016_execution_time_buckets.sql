-- The buckets of execution_hour_times as rows the trigger looks up, in place of
-- its two CASE expressions of 77 branches. SQLite keeps every trigger parsed in
-- each connection's schema: those two were 87 KB of each connection's 125 KB,
-- held by the writer, the checkpointer and every idle reader, and parsed again
-- at each open. Bucket k holds times under `below` (and at least the bound
-- before it); longer times are bucket 76. Written by this migration on each
-- store; `regente store copy` leaves it to the target's migrations.
CREATE TABLE execution_time_buckets (
    below   INTEGER PRIMARY KEY,
    bucket  INTEGER NOT NULL
);
INSERT INTO execution_time_buckets (below, bucket) VALUES
    (100, 0), (125, 1), (157, 2), (196, 3), (245, 4), (306, 5), (382, 6), (477, 7), (597, 8),
    (746, 9), (932, 10), (1165, 11), (1456, 12), (1819, 13), (2274, 14), (2843, 15), (3553, 16),
    (4441, 17), (5552, 18), (6939, 19), (8674, 20), (10843, 21), (13553, 22), (16941, 23),
    (21176, 24), (26470, 25), (33088, 26), (41360, 27), (51699, 28), (64624, 29), (80780, 30),
    (100975, 31), (126218, 32), (157773, 33), (197216, 34), (246520, 35), (308149, 36),
    (385186, 37), (481483, 38), (601854, 39), (752317, 40), (940396, 41), (1175495, 42),
    (1469368, 43), (1836710, 44), (2295888, 45), (2869860, 46), (3587325, 47), (4484156, 48),
    (5605194, 49), (7006493, 50), (8758116, 51), (10947645, 52), (13684556, 53), (17105695, 54),
    (21382118, 55), (26727648, 56), (33409559, 57), (41761949, 58), (52202436, 59), (65253045, 60),
    (81566306, 61), (101957883, 62), (127447353, 63), (159309192, 64), (199136489, 65),
    (248920612, 66), (311150764, 67), (388938455, 68), (486173069, 69), (607716336, 70),
    (759645420, 71), (949556775, 72), (1186945969, 73), (1483682461, 74), (1854603076, 75);

DROP TRIGGER executions_count_hourly;
CREATE TRIGGER executions_count_hourly AFTER UPDATE OF status ON executions
WHEN NEW.status IN ('FINISHED', 'ERROR', 'CANCELED') AND OLD.status NOT IN ('FINISHED', 'ERROR', 'CANCELED') AND NEW."end" IS NOT NULL
BEGIN
    INSERT INTO execution_hours
        (organization_id, hour, robot_id, runtime_id, status, reason, runs, busy_ms)
    VALUES (NEW.organization_id, NEW."end" - NEW."end" % 3600000, NEW.robot_id, NEW.runtime_id,
            NEW.status, CASE WHEN NEW.status = 'ERROR' THEN substr(COALESCE(NEW.end_reason, ''), 1, 200) ELSE '' END, 1, COALESCE(NEW."end" - NEW.started, 0))
    ON CONFLICT (organization_id, hour, robot_id, runtime_id, status, reason)
    DO UPDATE SET runs = runs + 1, busy_ms = busy_ms + excluded.busy_ms;
    INSERT INTO execution_hour_times (organization_id, hour, robot_id, kind, bucket, runs)
    SELECT NEW.organization_id, NEW."end" - NEW."end" % 3600000, NEW.robot_id, 'duration',
        COALESCE((SELECT bucket FROM execution_time_buckets WHERE below > NEW."end" - NEW.started ORDER BY below LIMIT 1), 76), 1
    WHERE NEW.started IS NOT NULL
    ON CONFLICT (organization_id, hour, robot_id, kind, bucket) DO UPDATE SET runs = runs + 1;
    INSERT INTO execution_hour_times (organization_id, hour, robot_id, kind, bucket, runs)
    SELECT NEW.organization_id, NEW."end" - NEW."end" % 3600000, NEW.robot_id, 'wait',
        COALESCE((SELECT bucket FROM execution_time_buckets WHERE below > NEW.started - NEW.init ORDER BY below LIMIT 1), 76), 1
    WHERE NEW.started IS NOT NULL
    ON CONFLICT (organization_id, hour, robot_id, kind, bucket) DO UPDATE SET runs = runs + 1;
END;
