INSERT INTO widgets (name, color) VALUES ('first', 'red'), ('second', NULL);
-- lifeguard:down
DELETE FROM widgets WHERE name IN ('first', 'second');
