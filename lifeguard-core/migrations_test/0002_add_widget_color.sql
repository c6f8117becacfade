ALTER TABLE widgets ADD COLUMN color text;
-- lifeguard:down
ALTER TABLE widgets DROP COLUMN color;
