// A Lanzadera job: arguments arrive in process.argv, the submitted config in
// config.json, and everything written under output/ is kept.
const fs = require('fs');

const config = fs.existsSync('config.json')
  ? JSON.parse(fs.readFileSync('config.json', 'utf8') || '{}')
  : {};
const name = process.argv[2] || config.name || 'world';
const greeting = `Hello, ${name}!`;
console.log(greeting);
fs.writeFileSync('output/greeting.txt', greeting + '\n');
fs.writeFileSync('output/run.json', JSON.stringify({ args: process.argv.slice(2), config }, null, 2));
