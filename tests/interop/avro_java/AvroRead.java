// Apache Avro's Java library reading what the receiver wrote, knowing only what it publishes.
//
//   java AvroRead <schema dir> <records file>
//
// <schema dir> holds the .avsc files fetched from the gateway: every wire schema and every
// message schema. All of them are parsed with ONE Schema.Parser (names must not clash), the wire
// schemas are put in a SchemaStore.Cache, and each record (one line: topic, a tab, the value in
// hex) is decoded by BinaryMessageDecoder, which reads the single-object header and finds the
// writer's schema by its CRC-64-AVRO fingerprint. Prints "decoded <topic> <schema>" per record
// and a last line "total <n> decoded <m>"; exits 1 if any record could not be decoded.

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.SchemaStore;

public final class AvroRead {
  public static void main(String[] args) throws Exception {
    File[] files = new File(args[0]).listFiles((dir, name) -> name.endsWith(".avsc"));
    java.util.Arrays.sort(files);
    Schema.Parser parser = new Schema.Parser();
    SchemaStore.Cache store = new SchemaStore.Cache();
    List<Schema> wire = new ArrayList<>();
    for (File file : files) {
      Schema schema = parser.parse(file);  // one parser: a clash of names fails here
      if (file.getName().startsWith("wire-")) {
        store.addSchema(schema);
        wire.add(schema);
      }
    }
    System.out.println("parsed " + files.length + " schemas together, " + wire.size() + " wire");
    int total = 0, decoded = 0;
    for (String line : Files.readAllLines(new File(args[1]).toPath(), StandardCharsets.UTF_8)) {
      if (line.isEmpty()) continue;
      total++;
      String[] parts = line.split("\t", 2);
      byte[] value = HexFormat.of().parseHex(parts[1]);
      try {
        long fingerprint = java.nio.ByteBuffer.wrap(value, 2, 8)
            .order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong();
        Schema writer = store.findByFingerprint(fingerprint);
        if (writer == null) throw new IllegalStateException("no published schema has fingerprint " + fingerprint);
        BinaryMessageDecoder<GenericRecord> decoder =
            new BinaryMessageDecoder<>(GenericData.get(), writer, store);
        GenericRecord record = decoder.decode(value);
        decoded++;
        System.out.println("decoded " + parts[0] + " " + record.getSchema().getFullName());
      } catch (Exception e) {
        System.out.println("failed " + parts[0] + " " + e);
      }
    }
    System.out.println("total " + total + " decoded " + decoded);
    System.exit(total == decoded && total > 0 ? 0 : 1);
  }
}
