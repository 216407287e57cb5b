// Run by the mongo image's entrypoint (mongosh, as the root user) once, on
// the first start with an empty data volume. Creates the user the Lanzadera
// services connect as (LZ_MONGO_URI): read/write and index management on the
// Lanzadera database, nothing else.
const dbName = process.env.MONGO_INITDB_DATABASE;
const user = process.env.MONGO_APP_USER;
const pwd = process.env.MONGO_APP_PASSWORD;
if (!dbName || !user || !pwd) {
  throw new Error('MONGO_INITDB_DATABASE, MONGO_APP_USER and MONGO_APP_PASSWORD must be set');
}
db.getSiblingDB('admin').createUser({
  user,
  pwd,
  roles: [
    { role: 'readWrite', db: dbName },
    { role: 'dbAdmin', db: dbName },
  ],
});
print(`created user ${user} on database ${dbName}`);
